#!/bin/bash
# One genlab run on a SLURM cluster: every GPU of every node allocated runs one training process.
#
#   sbatch examples/slurm_train.sh                 # RUN_DIR=... sbatch ... to choose the folder
#
# srun starts the processes itself (one task per GPU; SLURM_PROCID is the rank), so SLURM's
# signals reach every process and their exit codes come back to this script. At the time limit
# (120 s before it, --signal) or on preemption SLURM sends SIGTERM: every process finishes its
# step, the main one writes a checkpoint, and they exit 143; this script then requeues the job,
# and the requeued job resumes the run exactly (it must run on as many processes: keep --nodes
# and --gpus-per-node). A run that failed (exit 2) is not requeued.
#SBATCH --job-name=genlab
#SBATCH --nodes=2
#SBATCH --gpus-per-node=4
#SBATCH --ntasks-per-node=4            # = --gpus-per-node: one process per GPU
#SBATCH --cpus-per-task=8
#SBATCH --time=04:00:00
#SBATCH --signal=TERM@120              # SIGTERM to the processes 120 s before the time limit
#SBATCH --requeue
#SBATCH --open-mode=append             # a requeued job appends to the same log
#SBATCH --output=genlab-%j.out

set -uo pipefail

# The run folder must be on a file system every node mounts; only the main process writes it.
RUN_DIR=${RUN_DIR:-$HOME/genlab-runs/ddpm-cifar10}
DATA_DIR=${DATA_DIR:-$HOME/genlab-data}   # shared too, or fetched on every node beforehand

if [ -f "$RUN_DIR/checkpoints/latest.json" ]; then
    ARGS=(train --resume "$RUN_DIR")       # a requeued job continues where the last one stopped
else
    # --batch-size is per process: the global batch here is nodes x GPUs x 64 = 512
    ARGS=(train ddpm --dataset cifar10 --data-dir "$DATA_DIR" --batch-size 64 --lr 4e-4
          --warmup-steps 1000 --steps 200000 --checkpoint-every 2000 --run-dir "$RUN_DIR")
fi

# The first node hosts the process group's rendezvous (torch.distributed's env:// init).
export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export MASTER_PORT=${MASTER_PORT:-29500}
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}

srun --kill-on-bad-exit=1 bash -c '
    export RANK=$SLURM_PROCID LOCAL_RANK=$SLURM_LOCALID WORLD_SIZE=$SLURM_NTASKS
    export LOCAL_WORLD_SIZE=$SLURM_NTASKS_PER_NODE
    exec python -m genlab.cli "$@"' genlab "${ARGS[@]}"
status=$?

# 143 (SIGTERM) or 130 (SIGINT): preempted with a checkpoint written; come back and resume.
if [ "$status" -eq 143 ] || [ "$status" -eq 130 ]; then
    scontrol requeue "$SLURM_JOB_ID" || true
fi
exit "$status"
