"""Writing a model directory (``model.safetensors`` + ``model.json``), where the bundled one is, and the
weights' checksum (:func:`weights_sha256`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import atomic_write, write_json
from .info import CONFIG_FILE

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from .info import ModelInfo

log = logging.getLogger("fashion.modelio")

WEIGHTS_FILE = "model.safetensors"
LEGACY_WEIGHTS_FILE = "model.pth"  # a plain state dict, read with weights_only=True
_HASHED: dict[tuple, str] = {}  # weights_sha256's digests by file version (device, inode, size, mtime, ctime)
_HASHED_MAX = 16


def weights_file(directory) -> Path:
    """The model directory's weights file: ``model.safetensors``, else the legacy ``model.pth``.
    Raises FileNotFoundError naming both when neither is there."""
    directory = Path(directory)
    for name in (WEIGHTS_FILE, LEGACY_WEIGHTS_FILE):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"{directory}: no {WEIGHTS_FILE} or {LEGACY_WEIGHTS_FILE}")


def weights_sha256(path) -> str:
    """SHA-256 hex of a weights file (:func:`weights_file`), hashed once per version of the file in this
    process: opening a run made with the bundled model by another install compares the weights with the
    run's checksum (:func:`fashion.embedding.spec.locate_model`), and then builds its embedder from them
    (:meth:`fashion.embedding.Embedder.from_model_dir`), which hashed the same 9.5 MB again. A file
    rewritten since (another inode, size, mtime or ctime: a write moves the ctime, unless it lands in the
    same clock tick as the hash, which a model export does not) is hashed anew."""
    from ..rundir import file_sha256

    def version(st):
        return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns

    key = version(os.stat(path))
    digest = _HASHED.get(key)
    if digest is None:
        digest = file_sha256(path)
        if version(os.stat(path)) == key:  # not written to while it was read: the digest is this version's
            if len(_HASHED) >= _HASHED_MAX:
                _HASHED.clear()
            _HASHED[key] = digest
    return digest


def save_state_dict(path, model: "nn.Module | Mapping[str, torch.Tensor]") -> Path:
    """Write ``model.state_dict()`` (or a state dict itself: a stored one of :mod:`.storage`) as safetensors,
    atomically (a failing disk: :class:`OutputError`, decided by the OSError's errno in :mod:`fashion.atomic`)."""
    from safetensors.torch import save

    tensors = model if isinstance(model, Mapping) else model.state_dict()
    state = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    data = save(state, metadata={"format": "fashion"})  # bytes: the write itself is plain Python I/O
    with atomic_write(path, "wb") as f:
        f.write(data)
    return Path(path)


def export_model(output_dir, model: "nn.Module", info: "ModelInfo") -> Path:
    """Write ``model.safetensors`` and ``model.json`` (``info``, with its format version) into ``output_dir``."""
    output_dir = Path(output_dir)
    save_state_dict(output_dir / WEIGHTS_FILE, model)
    write_json(output_dir / CONFIG_FILE, info.to_json())
    log.info("exported the model to %s", output_dir)
    return output_dir / WEIGHTS_FILE


def bundled_model_dir() -> Path:
    """The clothing model shipped inside the package (``fashion/data/model``, its card in README.md):
    what every entry point embeds and classifies with when given no ``--model`` and no ``--arch``.
    FileNotFoundError when it is not installed."""
    directory = Path(__file__).resolve().parent.parent / "data" / "model"
    if not (directory / CONFIG_FILE).is_file() or not (directory / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"the bundled clothing model is missing at {directory} (model.json + "
                                f"{WEIGHTS_FILE}); reinstall fashion, or pass --model DIR or --arch NAME")
    return directory
