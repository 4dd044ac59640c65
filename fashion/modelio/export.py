"""Writing a model directory (``model.safetensors`` + ``model.json``), and where the bundled one is."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import atomic_write, write_json
from .info import CONFIG_FILE

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn

    from .info import ModelInfo

log = logging.getLogger("fashion.modelio")

WEIGHTS_FILE = "model.safetensors"
LEGACY_WEIGHTS_FILE = "model.pth"  # a plain state dict, read with weights_only=True


def weights_file(directory) -> Path:
    """The model directory's weights file: ``model.safetensors``, else the legacy ``model.pth``.
    Raises FileNotFoundError naming both when neither is there."""
    directory = Path(directory)
    for name in (WEIGHTS_FILE, LEGACY_WEIGHTS_FILE):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"{directory}: no {WEIGHTS_FILE} or {LEGACY_WEIGHTS_FILE}")


def save_state_dict(path, model: "nn.Module") -> Path:
    """Write ``model.state_dict()`` as safetensors, atomically (a failing disk: :class:`OutputError`,
    decided by the OSError's errno in :mod:`fashion.atomic`)."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
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
