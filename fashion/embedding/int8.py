"""int8 post-training quantisation of the embedding network, for ``runtime="openvino-int8"``.

OpenVINO's NNCF (``nncf.quantize``; the optional ``[int8]`` extra) puts int8 quantisers into the
converted network: weights per output channel, activations with the ranges it measures on
calibration images. Only the network body is quantised: the input normalisation, pooling, a trained
head and the L2 normalisation stay in floating point (quantised as well, the vectors come out off unit
length and precision@10 falls: benchmarks/README.md, "openvino-int8 runtime").

Calibration set: ``CALIBRATION_IMAGES`` photos of the sample the package ships (``fashion/data/sample``,
photos of clothing-dataset-small), spread evenly over its sorted file names and prepared by the
embedder's own resize. A fixed, shipped set makes the int8 network, and so every vector, the same
wherever and whenever it is built: a rerun, a resumed run and a later `fashion search` of a run get
bitwise the vectors of the first run. :func:`calibration_set` describes it (run.json); its id is part
of the embedding cache tag. Activation ranges are static, so a row's vector does not depend on the
batch it is computed in.

Calibrating costs seconds (NNCF runs the float network image by image and collects activation
statistics), so the quantised network is saved as OpenVINO IR in the embedder's cache directory
(``int8-model.xml`` / ``.bin``) and loaded from there next time.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import logging
import os
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("fashion.embedding")

CALIBRATION_IMAGES = 64
MODEL_FILE = "int8-model.xml"
# Nodes outside the body keep floating point (names of converted nodes start with the module path).
_NOT_BODY = r"^(?!__module\.body\.).*"


def nncf_available() -> bool:
    """True when the ``nncf`` package can be imported (checked without importing it)."""
    return importlib.util.find_spec("nncf") is not None


def calibration_paths() -> list[str]:
    """The ``CALIBRATION_IMAGES`` calibration photos of the bundled sample, evenly spaced by name."""
    from ..images import IMAGE_EXTENSIONS
    from ..sample import sample_root

    files = sorted(p for p in (sample_root() / "img").rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if len(files) < CALIBRATION_IMAGES:
        raise FileNotFoundError(f"the bundled sample at {sample_root()} has {len(files)} photos; int8 "
                                f"calibration needs {CALIBRATION_IMAGES}")
    pick = np.linspace(0, len(files) - 1, CALIBRATION_IMAGES).round().astype(int)
    return [str(files[i]) for i in pick]


def calibration_set() -> dict:
    """JSON-ready description of the calibration set: source, images, id (sha256 of names and bytes)."""
    from ..sample import sample_root

    root, digest = sample_root(), hashlib.sha256()
    for path in calibration_paths():
        digest.update(Path(path).relative_to(root).as_posix().encode() + b"\0" + Path(path).read_bytes())
    return {"source": "fashion/data/sample", "images": CALIBRATION_IMAGES, "id": digest.hexdigest()[:12]}


def calibration_images(size: int, resize: str) -> np.ndarray:
    """uint8 (n, 3, size, size) calibration photos, prepared as the embedder prepares its inputs."""
    from .reader import ImageDataset

    dataset = ImageDataset(calibration_paths(), None, size, resize)
    rows = [dataset[i] for i in range(len(dataset))]
    return np.stack([pixels.numpy() for pixels, ok, _, _ in rows if ok])


def quantized_model(model, size: int, resize: str, directory: Path | None):
    """The int8 version of the converted OpenVINO ``model`` (uint8 (N, 3, size, size) input): read
    from ``directory`` when it holds one, else calibrated now and saved there (None: a temporary
    directory). Either way the network compiled is the one read back from the IR files: saving
    changes how the quantised weights are stored, and a run that calibrates must compute the same
    vectors as one that reads the saved network."""
    import tempfile

    from .net import openvino_core

    if directory is None:
        with tempfile.TemporaryDirectory(prefix="fashion-int8-") as tmp:
            return quantized_model(model, size, resize, Path(tmp))
    saved = Path(directory) / MODEL_FILE
    if not (saved.is_file() and saved.with_suffix(".bin").is_file()):
        _save(_calibrate(model, size, resize), saved)
    else:
        log.info("int8: quantised network from %s", saved)
    return openvino_core().read_model(saved)


def _calibrate(model, size: int, resize: str):
    import nncf

    from . import sigstack

    start = time.perf_counter()
    images = calibration_images(size, resize)
    dataset = nncf.Dataset([images[i : i + 1] for i in range(len(images))])
    level = logging.getLogger("nncf").level
    nncf.set_log_level(logging.WARNING)  # its per-node notes are not for our users
    try:
        # nor its progress bars (printed on stdout); NNCF compiles on Cores of its own and drops them
        # in no set order: sigstack.kept() gives this thread back a signal stack that is still mapped
        with contextlib.redirect_stdout(io.StringIO()), sigstack.kept():
            quantized = nncf.quantize(model, dataset, subset_size=len(images),
                                      ignored_scope=nncf.IgnoredScope(patterns=[_NOT_BODY], validate=False))
    finally:
        nncf.set_log_level(level)
    log.info("int8: quantised on %d calibration photos in %.1f s", len(images), time.perf_counter() - start)
    return quantized


def _save(model, path: Path) -> None:
    """Write the IR pair under temporary names, then rename (.bin first: a reader checks the .xml)."""
    import openvino as ov

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.xml")
    ov.save_model(model, tmp, compress_to_fp16=False)
    tmp.with_suffix(".bin").replace(path.with_suffix(".bin"))
    tmp.replace(path)
