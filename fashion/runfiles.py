"""Validated readers of the files a run leaves (run.json, a training state.json, .npz/.npy headers).

Every value a reader uses is checked for presence, type and a sane range before use, and a bad one is
one :class:`RunFileError` line naming the file and the key (or column), never a ``KeyError`` traceback
deep in a reader. The files are opened through :mod:`fashion.filegate` (regular file, size limit).
:func:`check_npz` / :func:`check_npy` read only the array headers and refuse an array whose claimed
size the file cannot hold (an ``index.npz`` claiming a petabyte array), before numpy allocates it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import FashionError
from .filegate import read_bytes

MAX_JSON_BYTES = 64 << 20  # run.json / state.json are a few KB; a bigger one is not ours
MAX_SIZE = 4096  # px: the largest image side a network here is run at (2 GB of activations already)


class RunFileError(FashionError, ValueError):
    """A run file is missing a key or column, or holds a value of the wrong type or range."""


def read_json(path: os.PathLike | str, error: type[FashionError] | None = None) -> dict:
    """A JSON object from ``path`` (through the file gate: a regular file of at most MAX_JSON_BYTES), the
    one reader of every JSON file a run or a model directory holds; ``error`` (default
    :class:`RunFileError`; the run directory's readers pass :class:`~fashion.rundir.RunDirError`) names the
    file when it is not readable JSON or not an object."""
    from .filegate import UnsafeFileError

    error = error or RunFileError
    path = Path(path)
    try:
        data = read_bytes(path, MAX_JSON_BYTES, what="run file")
        value = json.loads(data.decode("utf-8"))
    except UnsafeFileError as exc:
        raise error(str(exc)) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path}: not readable JSON ({exc}); the file is incomplete or damaged") from None
    if not isinstance(value, dict):
        raise error(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def need(data: dict, key: str, kinds, path, where: str = "") -> object:
    """``data[key]`` checked to be one of ``kinds`` (bool is never an int here)."""
    name = f"{where}{key}"
    if key not in data:
        raise RunFileError(f"{path}: key {name!r} is missing")
    value = data[key]
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        wanted = " or ".join(k.__name__ for k in kinds)
        raise RunFileError(f"{path}: key {name!r} must be {wanted}, got {value!r}"[:300])
    return value


def check_size(value, source: str) -> int:
    """An image size in pixels: an int in 8..MAX_SIZE (``source`` names the option or file key)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 8 <= value <= MAX_SIZE:
        raise RunFileError(f"{source}: image size must be an integer from 8 to {MAX_SIZE} pixels, got {value!r}")
    return value


def read_run_json(path: os.PathLike | str) -> dict:
    """run.json of a retrieval run, with the ``embedder`` block a reader rebuilds the model from checked."""
    path = Path(path)
    info = read_json(path)
    desc = need(info, "embedder", dict, path)
    need(desc, "arch", str, path, "embedder.")
    need(desc, "checksum", str, path, "embedder.")
    for key, kinds in (("model_dir", (str, type(None))), ("layer", str), ("precision", str), ("runtime", str)):
        if key in desc:
            need(desc, key, kinds, path, "embedder.")
    if desc.get("size") is not None:
        check_size(desc["size"], f"{path}: key 'embedder.size'")
    return info


def read_state_json(path: os.PathLike | str) -> dict:
    """A training ``state.json`` (fashion.training.checkpoints) with every key resume uses checked:
    classes, config.arch, completed (stage names), best, history (rows with a stage), results."""
    path = Path(path)
    state = read_json(path)
    classes = need(state, "classes", list, path)
    config = need(state, "config", dict, path)
    need(config, "arch", str, path, "config.")
    completed = need(state, "completed", list, path)
    if not all(isinstance(s, str) for s in completed) or not all(isinstance(c, str) for c in classes):
        raise RunFileError(f"{path}: keys 'completed' and 'classes' must be lists of names")
    need(state, "best", dict, path)
    history = need(state, "history", list, path)
    if not all(isinstance(r, dict) and isinstance(r.get("stage"), str) for r in history):
        raise RunFileError(f"{path}: key 'history' must be a list of rows with a 'stage'")
    results = need(state, "results", dict, path)
    for name, r in results.items():
        if not isinstance(r, dict) or not isinstance(r.get("lr"), list):
            raise RunFileError(f"{path}: key 'results.{name}' must be an object with an 'lr' list")
    return state


# deflate cannot expand data by more than ~1032x: a member claiming more than this ratio is crafted
_MAX_DEFLATE_RATIO = 1100


def _array_header(f, where: str) -> tuple[tuple, "object", int, bool]:
    """(shape, dtype, header length, whether the data is in Fortran order) of the .npy stream at ``f``;
    RunFileError if malformed."""
    import numpy as np

    try:
        start = f.tell()
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f, max_header_size=10000)
        return tuple(int(n) for n in shape), dtype, f.tell() - start, bool(fortran)
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as exc:
        raise RunFileError(f"{where}: not a valid .npy array header ({exc})"[:300]) from None


def _claimed_bytes(shape: tuple, dtype) -> int:
    count = 1
    for n in shape:
        if n < 0:
            raise ValueError(f"negative dimension {n}")
        count *= n
    return count * dtype.itemsize


def npz_arrays(path: os.PathLike | str, map_above: int = 1 << 20) -> dict:
    """{member: array} of an ``.npz`` (no pickle): a member stored uncompressed (``np.savez``'s way) and
    larger than ``map_above`` bytes is a read-only memory map of the file at its data, not a read copy
    (a 100,000 x 512 ``faiss-ivf`` index.npz holds 400 MB: reading it was most of a server's start);
    the others as ``np.load`` reads them. Check the archive with :func:`check_npz` first."""
    import struct
    import zipfile

    import numpy as np

    out, small = {}, []
    with zipfile.ZipFile(path) as archive, open(path, "rb") as raw:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            name = info.filename[:-4]
            if info.compress_type != zipfile.ZIP_STORED or info.file_size <= map_above:
                small.append(name)
                continue
            raw.seek(info.header_offset)
            local = raw.read(30)  # the local file header: its name and extra field precede the data
            if len(local) != 30 or local[:4] != b"PK\x03\x04":
                raise ValueError(f"member {info.filename!r}: bad local header")
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            raw.seek(info.header_offset + 30 + name_len + extra_len)
            shape, dtype, _, fortran = _array_header(raw, f"{path}: member {info.filename!r}")
            if dtype.hasobject:
                raise ValueError(f"member {info.filename!r} holds Python objects (pickled data is never loaded)")
            out[name] = np.memmap(raw.name, dtype=dtype, mode="r", offset=raw.tell(), shape=shape,
                                  order="F" if fortran else "C")
    if small:
        with np.load(path, allow_pickle=False) as arrays:
            out.update({name: arrays[name] for name in small})
    return out


def check_npy(path: os.PathLike | str) -> tuple[tuple, "object"]:
    """(shape, dtype) of a ``.npy`` file whose header is consistent with its size; else RunFileError."""
    from .filegate import open_regular

    path = Path(path)
    with open_regular(path, what="array file") as f:
        shape, dtype, header, _ = _array_header(f, str(path))
        size = os.fstat(f.fileno()).st_size
    try:
        claimed = _claimed_bytes(shape, dtype)
    except ValueError as exc:
        raise RunFileError(f"{path}: bad array shape {shape}: {exc}") from None
    if dtype.hasobject:
        raise RunFileError(f"{path}: holds Python objects (pickled data is never loaded)")
    if header + claimed != size:
        raise RunFileError(f"{path}: the header claims a {shape} {dtype} array ({claimed:,} bytes) but the "
                           f"file holds {size - header:,} bytes of data")
    return shape, dtype


def check_npz(path: os.PathLike | str) -> dict[str, tuple[tuple, "object"]]:
    """{member: (shape, dtype)} of an ``.npz`` whose every array fits what the file holds.

    Reads the zip directory and each member's .npy header only. A member claiming more bytes than its
    uncompressed size, or an uncompressed size no deflate stream of its compressed size can produce,
    is refused (RunFileError naming the file and the member) before any array is allocated.
    """
    import zipfile

    from .filegate import check

    path = Path(path)
    size = check(path, what="array archive").st_size
    out = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                where = f"{path}: member {info.filename!r}"
                if info.compress_size > size or info.file_size > max(info.compress_size, 64) * _MAX_DEFLATE_RATIO:
                    raise RunFileError(f"{where} claims {info.file_size:,} bytes, more than the {size:,}-byte "
                                       "file can hold")
                if not info.filename.endswith(".npy"):
                    continue
                with archive.open(info) as f:
                    shape, dtype, header, _ = _array_header(f, where)
                try:
                    claimed = _claimed_bytes(shape, dtype)
                except ValueError as exc:
                    raise RunFileError(f"{where}: bad array shape {shape}: {exc}") from None
                if header + claimed > info.file_size:
                    raise RunFileError(f"{where}: the header claims a {shape} {dtype} array ({claimed:,} bytes) "
                                       f"but the member holds {info.file_size - header:,} bytes")
                out[info.filename[:-4]] = (shape, dtype)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError) as exc:
        raise RunFileError(f"{path}: not a valid .npz archive ({exc})") from None
    return out
