"""Files written atomically: a temporary file in the same folder, fsync, rename. A kill at any
moment leaves either the old file or the new one, never a torn one; a write that fails (a full
disk, an I/O error) leaves the old one and raises WriteFailed naming the file."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from genlab.errors import RunError, WriteFailed


def write_file_atomic(path: Path, write: Callable[[str], None]) -> None:
    """Let ``write`` fill a temporary file in the same folder, fsync it, then rename it to
    ``path`` atomically; on any failure the temporary file goes and ``path`` is untouched. An
    OSError (ENOSPC, EDQUOT, EIO, EROFS, ...) becomes WriteFailed naming ``path``."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        raise WriteFailed(f"could not write {path}: {err.strerror or err} (the file it "
                          f"replaces is unchanged)") from None
    finally:
        if tmp is not None and Path(tmp).exists():
            Path(tmp).unlink(missing_ok=True)


def write_atomic(path: Path, data: bytes) -> None:
    """Write bytes to ``path`` via a temporary file in the same folder and an atomic rename."""
    write_file_atomic(path, lambda tmp: Path(tmp).write_bytes(data))


def write_json(path: Path, obj: Any) -> None:
    write_atomic(Path(path), (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())


def read_bytes(path: Path) -> bytes:
    """The bytes of ``path``; a missing or unreadable file is a RunError naming it."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise RunError(f"{path} not found") from None
    except OSError as err:
        raise RunError(f"{path} cannot be read: {err.strerror or err}") from None


def read_json(path: Path) -> Any:
    """The JSON value in ``path``; a missing, unreadable, non-UTF-8 or invalid file is a RunError
    naming it."""
    raw = read_bytes(path)
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise RunError(f"{path}: not valid JSON (not UTF-8 text)") from None
    except json.JSONDecodeError as err:
        raise RunError(f"{path}: not valid JSON ({err})") from None
    except RecursionError:
        raise RunError(f"{path}: not valid JSON (nested too deeply)") from None


def sha256(data: bytes) -> str:
    """The SHA-256 hex digest of ``data`` (the checksum of the files a run folder records)."""
    return hashlib.sha256(data).hexdigest()
