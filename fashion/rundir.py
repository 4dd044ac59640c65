"""A run directory is a transaction: a reader sees the previous complete run or the new one, never a mix.

Writers::

    with rundir.transaction("runs/r1", kind="neighbors") as txn:
        save_csv(txn.path / "items.csv", ...)        # txn.path: a staging directory beside runs/r1
        write_json(txn.path / "run.json", {"run_id": txn.run_id, ...})
    # here runs/r1 holds the new files and manifest.json, swapped in with one rename

The staging directory is ``.<name>.staging-<pid>-<run id>`` in the target's parent (same file system,
so the swap is a rename; the file-system half, staging and swapping, is :mod:`fashion.staging`). On success :func:`transaction` writes ``manifest.json`` last (every file with
its size and SHA-256, the run id, the kind of run) and exchanges the staging directory with the target
in one ``renameat2(RENAME_EXCHANGE)`` (two renames where the kernel lacks it). On an exception or a
kill the target is untouched; a killed run's staging directory is removed by the next transaction on
the same target. Sub-directories named in ``keep`` (the embedding cache, ``cache/``) stay outside the
manifest and are carried over from the old directory to the new one, so reruns still reuse them.

Readers call :func:`verify` (or :func:`open_run`): it refuses a directory whose files do not match
its manifest with one line naming the file that differs.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import FashionError
from .staging import missing_ancestors, recover, remove_if_empty, remove_stale_staging, staging_path, swap

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
KEEP = ("cache",)  # carried over between runs, never part of a run's content
# files above this size also get a sampled fingerprint in the manifest (:func:`sample_sha256`), which a
# reader may check at open instead of hashing the whole file (verify(hashes="sampled"))
SAMPLE_ABOVE = 64 * 2**20
SAMPLE_BLOCKS, SAMPLE_BLOCK = 64, 64 * 1024
HASH_THREADS = 4  # files hashed at once by verify


class RunDirError(FashionError, ValueError):
    """A run directory is incomplete or does not match its manifest (the message names the file)."""


@dataclass
class Transaction:
    """An open run: write every file under ``path`` (the staging directory); ``run_id`` goes in run.json."""

    target: Path
    path: Path
    run_id: str
    kind: str

    def final(self, path: os.PathLike | str) -> Path:
        """Where a file written under :attr:`path` will be once the run is committed."""
        return self.target / Path(path).relative_to(self.path)


def new_run_id() -> str:
    """A fresh run id (32 hex digits)."""
    return uuid.uuid4().hex


@contextlib.contextmanager
def transaction(target: os.PathLike | str, kind: str = "run", keep: tuple[str, ...] = KEEP,
                run_id: str | None = None, retire=None) -> Iterator[Transaction]:
    """Stage a run beside ``target`` and swap it into place in one step when the block succeeds.

    The target directory is created (empty) if absent, so the ``keep`` sub-directories (the embedding
    cache) can live in it while the run works. Raises :class:`~fashion.errors.OutputError` when the
    parent cannot be written. On any exception the staging directory is removed and ``target`` is left
    exactly as it was: folders this transaction created are removed again while they are empty (a
    failed first run leaves no empty output folder; a cache it filled stays). ``retire``: called with
    the previous run's directory and ``target`` once the new one is in place, to keep it (the live catalogue's
    versions, :mod:`fashion.catalog.versions`) instead of removing it.
    """
    from .atomic import ensure_dir

    target = Path(target).absolute()
    if target.is_symlink():  # swap the directory the link points to; the link itself stays
        target = target.resolve()
    recover(target, has_manifest)
    created = missing_ancestors(target)
    ensure_dir(target)
    remove_stale_staging(target)
    run_id = run_id or new_run_id()
    staging = ensure_dir(staging_path(target, run_id))
    txn = Transaction(target, staging, run_id, kind)
    try:
        yield txn
        write_manifest(staging, run_id, kind, skip=keep, previous=target)
        swap(staging, target, keep, has_manifest, retire)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        remove_if_empty(created, KEEP)
        raise
    log.info("run %s committed to %s", run_id[:12], target)


def write_manifest(directory: os.PathLike | str, run_id: str, kind: str = "run",
                   skip: tuple[str, ...] = KEEP, previous: os.PathLike | str | None = None) -> Path:
    """Write ``directory/manifest.json``: every file (relative posix path → size, sha256), run id, kind.
    ``previous``: a sealed run whose files this one hard-linked (a new version carrying files over): a
    file that is the same inode as the previous run's file of that name keeps its manifest entry
    instead of being hashed again (run files are replaced by rename, never changed in place)."""
    from .atomic import write_json

    directory = Path(directory)
    known = _linked_entries(Path(previous)) if previous is not None else {}
    files = {}
    for path in sorted(_content_files(directory, skip)):
        rel = path.relative_to(directory).as_posix()
        st = path.stat()
        size = st.st_size
        entry = known.get(rel)
        if entry is not None and entry[0] == (st.st_dev, st.st_ino) and entry[1]["size"] == size:
            files[rel] = entry[1]
            continue
        files[rel] = {"size": size, "sha256": file_sha256(path),
                      **({"sample": sample_sha256(path)} if size > SAMPLE_ABOVE else {})}
    return write_json(directory / MANIFEST, {"version": MANIFEST_VERSION, "run_id": run_id, "kind": kind,
                                             "files": files})


def _linked_entries(previous: Path) -> dict:
    """{rel: ((device, inode), manifest entry)} of a sealed run's files (empty when it is none)."""
    if not has_manifest(previous):
        return {}
    out = {}
    with contextlib.suppress(RunDirError, OSError):
        for rel, entry in read_manifest(previous)["files"].items():
            with contextlib.suppress(OSError):
                st = os.stat(previous / rel)
                out[rel] = ((st.st_dev, st.st_ino), entry)
    return out


def verify(directory: os.PathLike | str, kind: str | None = None, hashes: bool | str = True,
           require: tuple[str, ...] = ()) -> dict:
    """Check that ``directory`` is one complete run: every file its manifest lists, unchanged.

    The single check every reader (``fashion search``, ``fashion serve``'s service, ``--resume``,
    ``load_model``) runs before trusting a run directory. Sizes are compared first (cheap), then the
    SHA-256 of every file (``hashes=False`` skips the hashing; ``hashes="sampled"`` hashes a file above
    :data:`SAMPLE_ABOVE` bytes by its recorded sample fingerprint only, see :func:`sample_sha256`: a
    change outside the sampled blocks of a large file then goes unseen until a full check), a few files at
    once, none started after the first that differs (in manifest order) is found. ``run.json``/``model.json``/``state.json``
    that carry a ``run_id`` must carry the manifest's. A manifest listing no file is refused, and so is
    one that leaves out a file named in ``require`` (the files the caller reads). Files the manifest does
    not list and the caller does not read (grids of later ``fashion search`` calls, the cache) are ignored.

    Returns the manifest (dict: version, run_id, kind, files). Raises :class:`RunDirError` with one
    line naming the directory and the file that differs: missing manifest, missing file, other size,
    other content, another run's id, or (when ``kind`` is given) a run of another kind.
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    if kind is not None and manifest.get("kind") != kind:
        raise RunDirError(f"{directory}: {MANIFEST} says this is a {manifest.get('kind')!r} run, "
                          f"not a {kind!r} run")
    from .filegate import UnsafeFileError, check

    files = manifest["files"]
    unlisted = [name for name in require if name not in files]
    if not files or unlisted:
        what = "lists no file" if not files else f"does not list {', '.join(unlisted)}"
        raise RunDirError(f"{directory}: {MANIFEST} {what}: it does not cover the run (rerun to rebuild it)")
    for rel, entry in files.items():
        path = directory / rel
        if not os.path.lexists(path):
            raise RunDirError(f"{directory}: {rel} is listed in {MANIFEST} but missing; the run directory "
                              "is incomplete (rerun to rebuild it)")
        try:
            size = check(path).st_size  # a FIFO or directory in a file's place is refused, never read
        except UnsafeFileError as exc:
            raise RunDirError(f"{directory}: {rel} {exc.reason}") from None
        if size != entry["size"]:
            raise RunDirError(f"{directory}: {rel} has {size} bytes but {MANIFEST} says {entry['size']}; "
                              "the file changed after the run (rerun to rebuild it)")
    if hashes:
        from concurrent.futures import ThreadPoolExecutor

        def matches(item) -> tuple[str, bool, bool]:
            (rel, entry), sampled = item, hashes == "sampled" and "sample" in item[1]
            digest = sample_sha256(directory / rel) if sampled else file_sha256(directory / rel)
            return rel, sampled, digest == entry["sample" if sampled else "sha256"]
        # a few files at once: hashlib and the reads release the GIL, and a cold page cache's reads overlap
        with ThreadPoolExecutor(HASH_THREADS) as pool:
            futures = [pool.submit(matches, item) for item in files.items()]
            try:
                for future in futures:  # manifest order: the first that differs is the one named
                    rel, sampled, same = future.result()
                    if not same:
                        raise RunDirError(f"{directory}: {rel} does not match its {'sampled ' if sampled else ''}"
                                          f"SHA-256 in {MANIFEST}; the file changed after the run (rerun to rebuild it)")
            finally:  # on a mismatch (or a read error) the files not yet started are never hashed
                pool.shutdown(wait=False, cancel_futures=True)
    for name in ("run.json", "model.json", "state.json"):
        if name in files:
            _check_run_id(directory, name, manifest["run_id"])
    return manifest


def open_run(directory: os.PathLike | str, kind: str | None = None) -> Path:
    """:func:`verify` ``directory`` and return it as a Path (for ``open_run(d) / "items.csv"``)."""
    verify(directory, kind=kind)
    return Path(directory)


def read_manifest(directory: os.PathLike | str) -> dict:
    """The parsed, shape-checked manifest of ``directory``; :class:`RunDirError` naming what is wrong."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise RunDirError(f"{directory}: no {MANIFEST}: not a complete run (interrupted, or written by an "
                          "older version); rerun to rebuild it")
    manifest = read_json_object(path)
    for key, kind in (("run_id", str), ("files", dict)):
        if not isinstance(manifest.get(key), kind):
            raise RunDirError(f"{path}: key {key!r} missing or not a {kind.__name__}")
    for rel, entry in manifest["files"].items():
        if (not isinstance(entry, dict) or not isinstance(entry.get("size"), int)
                or not isinstance(entry.get("sha256"), str) or not isinstance(entry.get("sample", ""), str)):
            raise RunDirError(f"{path}: entry {rel!r} needs an integer 'size' and a string 'sha256' (and "
                              "'sample', when present)")
        if rel.startswith("/") or ".." in rel.split("/"):
            raise RunDirError(f"{path}: entry {rel!r} points outside the run directory")
    return manifest


def has_manifest(directory: os.PathLike | str) -> bool:
    """Whether ``directory`` was sealed by a manifest (a complete run of this version)."""
    return (Path(directory) / MANIFEST).is_file()


def file_sha256(path: os.PathLike | str) -> str:
    """SHA-256 hex of a file's bytes (``hashlib.file_digest``: OpenSSL's loop over 1 MiB reads)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def sample_sha256(path: os.PathLike | str) -> str:
    """SHA-256 of a file's size and :data:`SAMPLE_BLOCKS` blocks of :data:`SAMPLE_BLOCK` bytes at evenly
    spaced offsets, the first and the last block included: a fingerprint that reads 4 MiB of a file of
    any size. It catches a truncated, extended, swapped or rewritten file and a header changed; it misses
    a change confined to the bytes between the samples (the full SHA-256 of the manifest covers those)."""
    size = os.stat(path).st_size
    digest = hashlib.sha256(str(size).encode())
    span = max(size - SAMPLE_BLOCK, 0)
    offsets = sorted({span * i // (SAMPLE_BLOCKS - 1) for i in range(SAMPLE_BLOCKS)})
    with open(path, "rb") as f:
        if hasattr(os, "posix_fadvise"):  # every block asked for at once: a cold cache reads them in parallel
            for offset in offsets:
                os.posix_fadvise(f.fileno(), offset, SAMPLE_BLOCK, os.POSIX_FADV_WILLNEED)
        for offset in offsets:
            f.seek(offset)
            digest.update(f.read(SAMPLE_BLOCK))
    return digest.hexdigest()


# ------------------------------------------------------------------------------------ internals


def _content_files(directory: Path, skip: tuple[str, ...]) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(directory):
        if Path(dirpath) == directory:
            dirnames[:] = [d for d in dirnames if d not in skip]
        for name in filenames:
            if name.startswith(".") or (Path(dirpath) == directory and name == MANIFEST):
                continue  # hidden temporary files of the atomic writers
            yield Path(dirpath, name)


def read_json_object(path: os.PathLike | str) -> dict:
    """A JSON object from a run file (:func:`fashion.runfiles.read_json`, the one JSON reader);
    :class:`RunDirError` naming the file when it is not one."""
    from .runfiles import read_json

    return read_json(path, error=RunDirError)


def _check_run_id(directory: Path, name: str, run_id: str) -> None:
    data = read_json_object(directory / name)
    found = data.get("run_id")
    if found is not None and found != run_id:
        raise RunDirError(f"{directory}: {name} belongs to run {str(found)[:12]}, {MANIFEST} to run "
                          f"{run_id[:12]}; the directory mixes two runs (rerun to rebuild it)")
