#!/bin/bash
# A `genlab compare` on a SLURM cluster: one array task per run (family x seed), then the report.
#
#   genlab compare --dataset mnist --data-dir $DATA --minutes 30 --seeds 5 \
#       --out $OUT --plan $OUT/plan.txt                     # writes one command a line
#   sbatch --array=1-$(wc -l < $OUT/plan.txt) examples/slurm_compare.sh $OUT/plan.txt
#   genlab compare ... (the same flags, without --plan)     # once the array is done: collects
#                                                           # the runs and writes the report
#
# Each task runs line SLURM_ARRAY_TASK_ID of the plan: `python -m genlab.cli compare ...
# --only FAMILY-seedN`, which trains and scores that one run and writes OUT/records/<run>.json.
# The compare folder must be on a file system every node mounts. A task that SLURM preempts is
# requeued (--requeue) and, run again, resumes its run from its record and its last checkpoint;
# a task that failed can be resubmitted alone (sbatch --array=K ...) the same way. Every run gets
# the same minutes, so give every task the same kind of node (the same GPU, or the same CPU
# cores): the budget is time.
#SBATCH --job-name=genlab-compare
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --gpus-per-task=1
#SBATCH --cpus-per-task=8
#SBATCH --time=02:00:00                 # > minutes + scoring of the three legs
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=genlab-compare-%A_%a.out

set -uo pipefail

PLAN=${1:?usage: sbatch --array=1-N examples/slurm_compare.sh PLAN_FILE}
LINE=$(sed -n "${SLURM_ARRAY_TASK_ID}p" "$PLAN")
if [ -z "$LINE" ]; then
    echo "no line ${SLURM_ARRAY_TASK_ID} in $PLAN" >&2
    exit 2
fi
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}

eval "exec $LINE"    # the plan's lines are shell-quoted commands
