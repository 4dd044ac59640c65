"""Versions of a live run: every add, remove or update commits a new sealed version (issue 28 item 6).

Layout: ``RUN/`` stays an ordinary run, the current version (any reader opens it as before); earlier
versions move to ``RUN.versions/<n>-<run id>/`` (each an ordinary, sealed run that ``fashion serve`` or
``open_run`` opens as it is), beside ``RUN.versions/writer.lock`` and ``RUN.versions/uploads/``.

- :func:`writer`: one writer at a time, an ``flock`` on ``writer.lock`` (which holds the writer's pid and
  start); a second writer waits up to ``wait`` seconds, then is refused with one line naming the
  holder (:class:`WriterBusy`). The kernel drops the lock when its process dies (kill -9 included).
  Readers take no lock: they open ``RUN`` (or an old version) whole, as always.
- :func:`transaction`: :func:`fashion.rundir.transaction` whose previous run is kept (moved, one rename,
  into ``RUN.versions``) instead of removed. A kill at any moment leaves ``RUN`` a whole version: before
  the swap the previous one, after it the new one; a kill between the swap and the move of the old
  directory loses that old version from the history only (the next transaction removes its leftover).
- :func:`stamp`: run.json's ``version`` (a run without one is version 1) and its ``changes`` entry;
- :func:`history` (``fashion versions RUN``) lists them; :func:`prune` keeps the newest N old ones.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..run import layout

log = logging.getLogger(__name__)

LOCK = "writer.lock"
DEFAULT_KEEP = 5  # old versions kept after each change
DEFAULT_WAIT = 30.0  # seconds a second writer waits for the lock
_NAME = re.compile(r"^(\d+)-([0-9a-f]{32})$")
_POLL = 0.05


class WriterBusy(ConfigError):
    """Another writer holds the run's lock (one line naming it)."""


def _holder(path: Path) -> str:
    with contextlib.suppress(OSError):
        text = path.read_text(encoding="utf-8", errors="replace").split()
        if text:
            return f"pid {text[0]}" + (f", since {text[1]}" if len(text) > 1 else "")
    return "a process that is just starting"


@contextlib.contextmanager
def writer(run_dir, wait: float = DEFAULT_WAIT):
    """Hold the run's writer lock for the block (waiting up to ``wait`` seconds for it, else
    :class:`WriterBusy`). Locks of two threads of one process exclude each other too (one open each)."""
    import fcntl

    from ..atomic import ensure_dir
    from ..provenance import created

    path = ensure_dir(layout.versions_dir(run_dir)) / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + max(0.0, float(wait))
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise WriterBusy(f"{Path(run_dir)}: another writer holds {path} ({_holder(path)}); waited "
                                     f"{float(wait):g} s (try again, or --wait longer)") from None
                time.sleep(_POLL)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {created()}\n".encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def version_of(info: dict) -> int:
    """A run's version number (run.json ``version``; a run written before versions is 1)."""
    value = info.get("version", 1)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else 1


def stamp(info: dict, change: dict) -> dict:
    """run.json's body for the next version: ``version`` one more, ``change`` (op, counts…; ``at`` added)
    appended to ``changes``."""
    from ..provenance import created

    return {**info, "version": version_of(info) + 1,
            "changes": list(info.get("changes", [])) + [{**change, "at": created()}]}


def _retire(old: Path, target: Path) -> None:
    """Move a replaced run (a transaction's previous directory) to ``RUN.versions/<n>-<run id>``."""
    from ..rundir import read_manifest
    from ..runfiles import read_json

    home = layout.versions_dir(target)
    home.mkdir(parents=True, exist_ok=True)
    number = version_of(read_json(old / layout.RUN_JSON))
    os.rename(old, home / f"{number}-{read_manifest(old)['run_id']}")


@contextlib.contextmanager
def transaction(run_dir, kind: str = layout.RUN_KIND):
    """:func:`fashion.rundir.transaction` on ``run_dir`` that keeps the previous version in
    ``RUN.versions`` (hold :func:`writer` around the read and this write)."""
    from .. import rundir

    with rundir.transaction(run_dir, kind=kind, retire=_retire) as txn:
        yield txn


@dataclass
class Version:
    """One version of a run: number, run id, directory, when it was made, the change that made it,
    its live items and gallery size, and whether it is the current one (``RUN`` itself)."""

    number: int
    run_id: str
    path: Path
    at: str
    change: str
    items: int
    gallery: int
    current: bool = False

    def line(self) -> str:
        return (f"{self.number:>5}{'*' if self.current else ' '} {self.at:<25} {self.change:<28} "
                f"{self.items:>9} {self.gallery:>9}  {self.run_id[:12]}")


def _describe(change: dict | None) -> str:
    if not change:
        return "created"
    op = str(change.get("op", "?"))
    if op == "update":
        return f"update {','.join(map(str, change.get('columns', [])))}"[:28]
    return f"{op} {change.get('count', '')}".strip()


def _version(path: Path, current: bool) -> Version | None:
    from ..errors import FashionError
    from ..runfiles import read_json

    try:
        info, metrics = read_json(path / layout.RUN_JSON), read_json(path / layout.METRICS_JSON)
    except FashionError as exc:
        log.warning("%s: not a readable version (%s): left out", path, exc)
        return None
    changes = info.get("changes") or []
    last = changes[-1] if changes and version_of(info) > 1 else None
    at = str((last or {}).get("at") or info.get("created") or "")
    return Version(version_of(info), str(info.get("run_id", "")), path, at, _describe(last),
                   int(metrics.get("n_ok", 0)), int(metrics.get("n_gallery", 0)), current)


def old_versions(run_dir) -> list[tuple[int, Path]]:
    """(number, directory) of the kept earlier versions, oldest first."""
    home = layout.versions_dir(run_dir)
    found = []
    if home.is_dir():
        for entry in home.iterdir():
            match = _NAME.match(entry.name)
            if match and entry.is_dir():
                found.append((int(match.group(1)), entry))
    return sorted(found)


def history(run_dir) -> list[Version]:
    """Every version of the run, the current one (``RUN``) last."""
    run_dir = Path(run_dir)
    if not (run_dir / layout.RUN_JSON).is_file():
        raise ConfigError(f"{run_dir}: not a finished run (no {layout.RUN_JSON})")
    out = [v for _, path in old_versions(run_dir) if (v := _version(path, False)) is not None]
    current = _version(run_dir, True)
    return out + ([current] if current is not None else [])


def prune(run_dir, keep: int = DEFAULT_KEEP) -> list[Path]:
    """Remove all but the newest ``keep`` earlier versions (each first renamed to a hidden name, so a
    killed prune leaves no half version listed). Returns the removed directories."""
    if keep < 0:
        raise ConfigError(f"keep must be >= 0, got {keep}")
    old = old_versions(run_dir)
    doomed = [path for _, path in old[:max(0, len(old) - keep)]]
    for path in doomed:
        trash = path.with_name(f".pruned-{path.name}")
        os.rename(path, trash)
        shutil.rmtree(trash, ignore_errors=True)
    if doomed:
        log.info("%s: pruned %d old versions (kept %d)", run_dir, len(doomed), min(keep, len(old)))
    return doomed


HEADER = f"{'version':>6} {'made':<25} {'change':<28} {'items':>9} {'gallery':>9}  run id"
