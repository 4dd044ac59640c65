"""The file-system half of a run transaction (:func:`fashion.rundir.transaction`): a staging directory
beside its target, swapped into the target's place in one step, and what killed runs left behind.

The staging directory is ``.<name>.staging-<pid>-<run id>`` in the target's parent (same file system, so
the swap is a rename). :func:`swap` exchanges it with the target in one ``renameat2(RENAME_EXCHANGE)``
(two renames where the kernel lacks it: the previous run waits as ``.<name>.old-<run id>`` between them,
and :func:`recover` puts it back when a kill came in between). :func:`remove_stale_staging` removes what
killed runs on the same target left beside it. Nothing here reads a manifest: whether a directory is a
complete run is the caller's ``complete`` predicate.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import shutil
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

_STAGING = ".staging-"
_OLD = ".old-"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def staging_path(target: Path, run_id: str) -> Path:
    """The staging directory of run ``run_id`` on ``target``, in ``target``'s parent (this process's)."""
    return target.parent / f".{target.name}{_STAGING}{os.getpid()}-{run_id[:12]}"


def target_of(path: os.PathLike | str) -> Path:
    """The run a transaction's staging directory ``path`` becomes when sealed (``path`` itself when it is
    no staging directory): where the run's carried-over work (``cache/``) lies while the run is written."""
    path = Path(path)
    marker = path.name.rfind(_STAGING)
    if path.name.startswith(".") and marker > 1:
        return path.parent / path.name[1:marker]
    return path


def missing_ancestors(path: Path) -> list[Path]:
    """``path`` and its parents that do not exist yet, deepest first."""
    missing = []
    while not os.path.lexists(path) and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def remove_if_empty(folders: list[Path], keep: tuple[str, ...]) -> None:
    """Remove ``folders`` (deepest first) and their empty ``keep`` sub-folders while they are empty."""
    for folder in folders:
        with contextlib.suppress(OSError):
            for name in keep:
                if (folder / name).is_dir() and not any((folder / name).iterdir()):
                    (folder / name).rmdir()
            folder.rmdir()  # refuses a folder that is not empty


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directories (Linux renameat2); False where the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def swap(staging: Path, target: Path, keep: tuple[str, ...], complete: Callable[[Path], bool],
         retire=None) -> None:
    """Put ``staging`` in ``target``'s place, carrying the ``keep`` sub-directories over; the previous
    run goes to ``retire`` (when given and ``complete`` says it is a complete run) or is removed."""
    for name in keep:
        if (target / name).is_dir() and not (staging / name).exists():
            os.rename(target / name, staging / name)  # one rename: the cache is never copied
    fsync_dir(staging)
    if exchange(staging, target):
        old = staging  # now holds the previous run
    else:
        old = target.parent / f".{target.name}{_OLD}{staging.name.rsplit('-', 1)[-1]}"
        os.rename(target, old)
        os.rename(staging, target)
    fsync_dir(target.parent)
    if retire is not None and complete(old):
        try:
            retire(old, target)
            return
        except Exception as exc:  # noqa: BLE001 - the new run is in place whatever keeping the old one did
            log.warning("%s: the previous run could not be kept (%s): removed", target, exc)
    shutil.rmtree(old, ignore_errors=True)


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def recover(target: Path, complete: Callable[[Path], bool]) -> None:
    """Where a swap without renameat2 was killed between its two renames, put the old run back (the first
    ``.old-`` directory that ``complete`` accepts)."""
    if target.exists():
        return
    for old in sorted(target.parent.glob(f".{target.name}{_OLD}*")):
        if complete(old):
            os.rename(old, target)
            log.warning("restored %s from %s (a run was killed while swapping it in)", target, old)
            return


def remove_stale_staging(target: Path) -> None:
    """Remove what killed runs on ``target`` left beside it (their process is gone)."""
    prefix = f".{target.name}"
    with contextlib.suppress(OSError):
        for entry in target.parent.iterdir():
            name = entry.name
            if not name.startswith(prefix):
                continue
            rest = name[len(prefix):]
            if rest.startswith(_STAGING):
                pid = rest[len(_STAGING):].split("-", 1)[0]
                if pid.isdigit() and _alive(int(pid)):
                    continue  # a concurrent run on the same target
            elif not rest.startswith(_OLD):
                continue
            log.info("removing %s left by an interrupted run", entry)
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
