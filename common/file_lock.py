"""Advisory locks across processes (flock on a lock file): writers of one package take turns.

Two `p2phd build` runs on the same package (say one per backend, started together) each
read-modify-write its quality report, and an int8 calibration rewrites the manifest and the
int8 graph: without turns, one run's entry or record can silently replace the other's. The lock
is advisory (only p2phd's writers take it) and released by the kernel if its holder dies; on a
file system without locks (some network mounts) the writers go on without turns, warned.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)


@contextlib.contextmanager
def locked(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on the file `path` (it and its folder created if absent; the
    folder's parent must exist) for the block; where another process holds it, say so (`what` it
    guards) and wait."""
    path.parent.mkdir(exist_ok=True)
    with open(path, "a+b") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("waiting for another process writing %s (lock: %s)", what, path)
            fcntl.flock(f, fcntl.LOCK_EX)
        except OSError as e:  # a file system without locks (some network mounts): as before
            log.warning("cannot lock %s (%s); writing %s without turns", path, e.strerror, what)
            yield
            return
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
