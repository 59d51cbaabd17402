"""Atomic file writes: a temporary file in the target's directory, fsync, then rename.

A reader (or a resumed run) therefore sees either the old file or the complete new one, never a
truncated one, even if the writer is killed half-way.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

TMP_PREFIX = ".p2phd-tmp-"


def _read_umask() -> int:
    """The process umask, read once at import: os.umask is process-wide and racy in threads."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed onto `path`."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=target.suffix, dir=target.parent)
    # mkstemp makes the file private (0600); give it the mode a plain open() would have.
    os.fchmod(fd, 0o666 & ~_UMASK)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def remove_stale_temporaries(directory: str | os.PathLike) -> int:
    """Delete temporaries left by a killed writer under `directory`; return how many."""
    removed = 0
    for stale in Path(directory).rglob(f"{TMP_PREFIX}*"):
        stale.unlink(missing_ok=True)
        removed += 1
    return removed
