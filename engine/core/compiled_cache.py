"""The engine cache: compiled engines and optimized models, kept outside the model package.

A package may sit where nothing can be written (site-packages, a read-only volume, a shared model
store) and several servers may load it at once, so nothing is written into it at render or serve
time. Engines go to::

    $P2PHD_CACHE (else $XDG_CACHE_HOME/p2phd, else ~/.cache/p2phd)
      <package key>/<backend key>/<files>

The package key is a hash of the package's manifest (which holds every file's sha256), so copies
of one package share entries and a re-exported package gets new ones; the backend key names the
backend, its runtime version and the device. Entries written with `write_entry` carry in a header
the sha256 of their place (package key, backend key, name) and payload, so a changed entry, or
one copied from another package's folder, does not verify; they are renamed into place whole:
when several processes build the same entry at once the last rename wins and every reader sees
one complete file. `read_entry` returns None for a missing, foreign or changed entry, and the
caller rebuilds it.

The cache's bytes on disk are bounded (`$P2PHD_CACHE_MAX_MB`, default 2048): after each write the
least recently used files (by modification time, refreshed on every read) are deleted until the
rest fit. Deleting an entry another process uses is safe: readers hold its bytes in memory.
`package_files` lists what the cache holds for one package (what `p2phd info` shows).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from p2phd.common.atomic import TMP_PREFIX, atomic_write_bytes
from p2phd.common.errors import ConfigError

log = logging.getLogger(__name__)

CACHE_ENV = "P2PHD_CACHE"
MAX_MB_ENV = "P2PHD_CACHE_MAX_MB"
DEFAULT_MAX_MB = 2048
MAGIC = b"p2phd-cache-entry sha256="
HEADER_BYTES = len(MAGIC) + 64 + 1  # magic, hex digest, newline
# A temporary older than this was left by a killed writer (a live one renames within minutes).
STALE_TEMPORARY_S = 3600


def cache_root() -> Path:
    """The cache directory: $P2PHD_CACHE, else $XDG_CACHE_HOME/p2phd, else ~/.cache/p2phd."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "p2phd"


def env_megabytes(name: str, default_mb: int) -> int:
    """A bound in bytes from the environment variable `name`, a whole number of megabytes."""
    text = os.environ.get(name, str(default_mb))
    if not text.isdigit():
        raise ConfigError(f"{name}={text!r}: expected a whole number of megabytes")
    return int(text) << 20


def max_bytes() -> int:
    """The bound on the cache's bytes on disk, from $P2PHD_CACHE_MAX_MB."""
    return env_megabytes(MAX_MB_ENV, DEFAULT_MAX_MB)


def package_key(content_key: str) -> str:
    """The folder of one package's entries: the start of its manifest's hash."""
    return content_key[:24]


def backend_dir(package_key: str, backend_key: str) -> Path:
    """The folder for one backend's files of one package, created if needed."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", backend_key).strip("-")
    d = cache_root() / package_key / safe
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(
            f"engine cache {d} cannot be created ({e.strerror}); set {CACHE_ENV} to a writable "
            "directory"
        ) from e
    return d


def write_entry(path: Path, payload: bytes) -> bool:
    """Store `payload` at `path` with its sha256, atomically, then evict to the byte bound.

    Returns False (and logs why) when the cache cannot be written: the caller goes on uncached.
    """
    header = _header(path, payload)
    try:
        atomic_write_bytes(path, header + payload)
    except OSError as e:
        log.warning("engine cache: cannot write %s (%s); continuing without it", path, e)
        return False
    evict(cache_root(), max_bytes())
    return True


def read_entry(path: Path) -> bytes | None:
    """The payload stored at `path`, or None when it is missing or does not match its hash."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None  # missing, or its folder cannot exist (the cache root is under a file)
    except OSError as e:
        log.warning("engine cache: cannot read %s (%s); rebuilt", path, e)
        return None
    header, payload = data[:HEADER_BYTES], data[HEADER_BYTES:]
    if header != _header(path, payload):
        log.warning("engine cache: %s is not what p2phd wrote (changed or foreign): rebuilt", path)
        return None
    with contextlib.suppress(OSError):  # a read-only cache still serves its entries
        os.utime(path)  # mark it recently used for eviction
    return payload


def _header(path: Path, payload: bytes) -> bytes:
    """MAGIC, then the sha256 of the entry's place in the cache and of its payload."""
    digest = hashlib.sha256("/".join(path.parts[-3:]).encode() + b"\0")
    digest.update(payload)
    return MAGIC + digest.hexdigest().encode() + b"\n"


@dataclass(frozen=True)
class CachedFile:
    """One file of a package's entries, as the file system describes it."""

    backend_key: str
    name: str
    size: int
    last_used: float  # modification time, refreshed by every read


def package_files(package_key: str) -> list[CachedFile]:
    """The files the cache holds for one package, by backend key and name. Only the file system
    is asked (nothing is read, verified or marked used): a changed entry is listed, and rebuilt
    when next read."""
    found = []
    for path in sorted((cache_root() / package_key).glob("*/*")):
        try:
            st = path.lstat()
        except FileNotFoundError:  # evicted meanwhile
            continue
        if stat.S_ISREG(st.st_mode) and not path.name.startswith(TMP_PREFIX):
            found.append(CachedFile(path.parent.name, path.name, st.st_size, st.st_mtime))
    return found


def evict(root: Path, limit: int) -> list[Path]:
    """Delete the least recently used files under `root` until the rest total <= `limit` bytes;
    also delete temporaries left by killed writers. Returns what was deleted."""
    entries, removed = [], []
    now = time.time()
    for p in root.rglob("*"):
        try:
            st = p.lstat()
        except FileNotFoundError:  # another process evicted it meanwhile
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        if p.name.startswith(TMP_PREFIX):
            if now - st.st_mtime > STALE_TEMPORARY_S:
                p.unlink(missing_ok=True)
                removed.append(p)
            continue  # a writer's file in flight
        entries.append((st.st_mtime, st.st_size, p))
    total = sum(size for _, size, _ in entries)
    for _, size, p in sorted(entries, key=lambda e: e[0]):
        if total <= limit:
            break
        p.unlink(missing_ok=True)
        removed.append(p)
        total -= size
    if removed:
        log.info("engine cache: evicted %d file(s) to stay within %d MB", len(removed), limit >> 20)
    return removed
