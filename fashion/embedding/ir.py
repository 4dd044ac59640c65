"""A run's network saved as OpenVINO IR and served from it without torch: :class:`SavedNetwork`.

A server of a run embedded with ``runtime="openvino"`` does not rebuild the torch model and convert it
at every start (the imports of torch, timm and fastai and the conversion were most of `fashion serve`'s
start-up, benchmarks/README.md). The first start converts once and saves the network under the run's
work directory; every later start compiles the saved network, and OpenVINO's compiled-model cache
(``CACHE_DIR``) makes even that a read of a blob::

    <run>/cache/openvino-ir/<digest>/network.xml, network.bin   the converted network (fp32 weights)
                                    network.json                what :class:`SavedNetwork` needs to serve it
                                    classes.npz                 the trained head's last layer (``layer`` head)
                                    compiled/                   OpenVINO's compiled-blob cache

``<digest>`` (:func:`ir_digest`) is a hash of what makes the network: the weights' checksum, the arch,
layer, size, mean/std, resize, whether the network also classifies, and the OpenVINO version. A
retrained model has another checksum, so another digest: a saved network is never served for weights
it was not made from. The directory is written whole under a temporary name and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from .ovcore import openvino_core

log = logging.getLogger("fashion.embedding")

IR_FORMAT = 1
IR_DIR = ("cache", "openvino-ir")  # under the run directory (a work directory: outside its manifest)
NETWORK = "network.xml"
META = "network.json"
CLASSES = "classes.npz"
COMPILED = "compiled"
_KEY_FIELDS = ("arch", "checksum", "layer", "size", "mean", "std", "resize", "runtime")


def ir_digest(described: dict, classify: bool) -> str:
    """16 hex digits naming the saved network of the embedder ``described`` (run.json's ``embedder``
    block); ``classify``: the network also outputs the class probabilities."""
    import openvino

    key = {name: described.get(name) for name in _KEY_FIELDS}
    key.update(format=IR_FORMAT, classify=bool(classify), openvino=openvino.__version__)
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def ir_directory(run_dir, described: dict, classify: bool) -> Path:
    return Path(run_dir).joinpath(*IR_DIR, ir_digest(described, classify))


def is_saved(directory: Path) -> bool:
    return (Path(directory) / META).is_file()


def save(model, directory: Path, meta: dict, classes: tuple | None = None) -> Path:
    """Write the converted ``openvino.Model`` ``model`` (weights kept fp32), ``meta`` (network.json) and
    the classifier's last layer ``classes`` ((weight, bias) arrays or None) to ``directory``, staged
    beside it and renamed into place; a directory another process finished meanwhile is kept."""
    import openvino as ov

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        ov.save_model(model, os.fspath(stage / NETWORK), compress_to_fp16=False)
        if classes is not None:
            np.savez(stage / CLASSES, weight=np.asarray(classes[0], np.float32), bias=np.asarray(classes[1], np.float32))
        (stage / META).write_text(json.dumps({"format": IR_FORMAT, **meta}, indent=1))
        try:
            os.rename(stage, directory)
        except OSError:
            if not is_saved(directory):
                raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return directory


def save_embedder(embedder, directory: Path) -> Path:
    """Save what ``embedder`` (a :class:`~fashion.embedding.Embedder` of the openvino runtime) infers, for
    :class:`SavedNetwork` to serve without torch, with the trained head's last layer when the vectors are
    its input (``layer`` head: the category scores)."""
    from torch import nn

    from ..heads import linear_arrays

    model = embedder.openvino_model()
    last = embedder.classes if embedder.layer == "head" and isinstance(embedder.classes, nn.Linear) else None
    classes = None if last is None else linear_arrays(last)
    meta = {"name": embedder.name, "size": embedder.size, "resize": embedder.resize, "layer": embedder.layer,
            "precision": embedder.precision, "classify": embedder.can_classify, "dim": embedder.dim,
            "class_names": list(embedder.class_names) if embedder.can_classify else [],
            "embedder": embedder.describe()}
    return save(model, directory, meta, classes)


class SavedNetwork:
    """A saved network (see the module docstring) compiled for this CPU: what the service needs of an
    embedder, without torch.

    Attributes as :class:`~fashion.embedding.Embedder`'s: name, size, resize, layer, precision,
    class_names, can_classify; ``class_weights``: (weight (c, d), bias (c,)) float32 of the trained
    head's last layer, or None. :meth:`infer` runs it. ``threads``: OpenVINO's inference threads
    (default: the CPUs this process may use).
    """

    def __init__(self, directory, threads: int | None = None):
        directory = Path(directory)
        meta = json.loads((directory / META).read_text())
        if meta.get("format") != IR_FORMAT:
            raise ValueError(f"{directory / META}: format {meta.get('format')!r}, expected {IR_FORMAT}")
        self.directory = directory
        self.name, self.size, self.resize = meta["name"], int(meta["size"]), meta["resize"]
        self.layer, self.precision = meta["layer"], meta["precision"]
        self.class_names = tuple(meta.get("class_names", ()))
        self.can_classify = bool(meta.get("classify"))
        self.dim = int(meta["dim"])
        self.class_weights = None
        if (directory / CLASSES).is_file():
            with np.load(directory / CLASSES) as saved:
                self.class_weights = (saved["weight"], saved["bias"])
        config = {"INFERENCE_PRECISION_HINT": "bf16" if self.precision == "bf16" else "f32",
                  "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_NUM_THREADS": int(threads or len(os.sched_getaffinity(0)))}
        compiled = directory / COMPILED
        try:
            compiled.mkdir(exist_ok=True)
            if os.access(compiled, os.W_OK):
                config["CACHE_DIR"] = os.fspath(compiled)
        except OSError:  # a read-only run: compiled at every start, not cached
            pass
        start = time.perf_counter()
        self.compiled = openvino_core().compile_model(os.fspath(directory / NETWORK), "CPU", config)
        log.info("%s: saved OpenVINO network compiled in %.2f s (%s)", self.name, time.perf_counter() - start,
                 "cached" if "CACHE_DIR" in config else "no cache")

    def infer(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """uint8 (N, S, S, 3) RGB → ((N, d) float32 L2-normalised vectors, (N, c) class probabilities from
        the same pass or None), as :meth:`fashion.embedding.Embedder.infer`."""
        results = self.compiled(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)))
        outs = [np.array(results[i], dtype=np.float32) for i in range(len(results))]  # copies: buffers are reused
        return outs[0], (outs[1] if self.can_classify else None)
