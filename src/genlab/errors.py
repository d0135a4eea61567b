"""The exceptions genlab raises for bad input; the CLI prints them as one line and exits 2."""

from __future__ import annotations


class GenlabError(ValueError):
    """Base class: input, data, a run folder or a request that genlab cannot use."""

    every_rank: bool = False
    """set on an error that every process of a multi-process run raised alike, at the same point
    (the CLI prints it once, on the main process)"""
    exit_code: int = 2
    """the exit status of the `genlab` command that stops on this error"""


class ConfigError(GenlabError):
    """A configuration value or combination that genlab cannot run."""


class DataError(GenlabError):
    """Input data that genlab cannot use; the message names the file, row or value."""


class RunError(GenlabError):
    """A run folder that is missing, incomplete, damaged, or of the wrong kind for the request."""


class TrainingDiverged(GenlabError):
    """A non-finite loss or a collapsed adversarial game; the last good checkpoint is kept."""


class WriteFailed(GenlabError):
    """A file could not be written (disk full, quota, I/O error, read-only file system); what was
    there before is intact. Its own exit code, 74 (EX_IOERR of sysexits.h), lets a batch script
    tell "free space and resume" from an error in the input (2)."""

    exit_code = 74


class FallbackWarning(UserWarning):
    """A damaged or missing file was passed over for a fallback: an older intact checkpoint, a
    cached feature network trained again (the CLI prints it as one line)."""


def one_line(err: BaseException, limit: int = 200) -> str:
    """The message of ``err`` on one line, shortened (a parser's error quoted in ours)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def on_every_rank(err: GenlabError) -> GenlabError:
    """Mark ``err`` as raised alike by every process (see ``GenlabError.every_rank``)."""
    err.every_rank = True
    return err


class Preempted(Exception):
    """Training stopped on SIGTERM or SIGINT after finishing its step and writing a checkpoint;
    ``genlab train --resume RUN`` continues it exactly. The CLI exits with ``exit_code``:
    128 + the signal number (143 for SIGTERM, 130 for SIGINT), as a shell reports a process
    ended by that signal, so a batch script can tell "preempted, resume me" from a failure."""

    def __init__(self, message: str, signal_number: int, step: int) -> None:
        super().__init__(message)
        self.signal_number, self.step = signal_number, step

    @property
    def exit_code(self) -> int:
        return 128 + self.signal_number
