"""What the service reads besides the run itself (which :func:`fashion.run.reader.open_run` reads and
checks): the embedder rebuilt with the run's exact settings (:func:`embedder_for`), and the trained
model's reports (:func:`read_model_reports`).
"""

from __future__ import annotations

import logging
from pathlib import Path


log = logging.getLogger("fashion.service")

SUSPECTS_FILE = "suspect_labels.csv"  # in the trained model's directory
# OpenVINO's threads for a served network: one. A second made a batch-1 call no faster (6.2 ms either
# way) and cost 1-2 ms more CPU a photo; with one, the other core decodes and resizes the next photos
# meanwhile (benchmarks/README.md, "serve on the AMD EPYC Zen 4").
INFERENCE_THREADS = 1
SUSPECTS_COLUMNS = {"path": "str", "label": "str", "predicted": "str", "label_prob": "float", "predicted_prob": "float"}


def read_model_reports(info: dict) -> tuple:
    """(suspect_labels.csv as a DataFrame or None, the trust block of its metrics.json or None) of the
    run's trained model: read once at open, like every other file the service answers from."""
    model_dir = info["embedder"].get("model_dir")
    if not model_dir:
        return None, None
    table = None
    if (Path(model_dir) / SUSPECTS_FILE).is_file():
        from ..run.checks import read_table

        table = read_table(Path(model_dir) / SUSPECTS_FILE, SUSPECTS_COLUMNS)
    trust, path = None, Path(model_dir) / "metrics.json"
    if path.is_file():
        from ..errors import FashionError
        from ..runfiles import read_json

        try:
            block = read_json(path).get("suspect_labels", {})
        except FashionError as exc:
            log.warning("%s: unreadable (%s)", path, exc)
            block = None
        if isinstance(block, dict) and "reliable" in block:
            trust = {key: block.get(key) for key in ("model_accuracy", "min_accuracy", "reliable", "caveat")}
    return table, trust


def embedder_for(info: dict, run_dir=None):
    """Rebuild the run's embedder from run.json; refuse when its weights are not the ones the run used.

    With ``run_dir`` and a run embedded by OpenVINO, the network saved under the run
    (:class:`~fashion.embedding.ir.SavedNetwork`, saved by the first start) is served instead: no torch."""
    from dataclasses import replace

    from ..embedding import RUNTIMES, Embedder, EmbedderSpec
    from ..embedding.ovcore import openvino_available

    spec = EmbedderSpec.from_json(info["embedder"])
    runtime = spec.runtime  # the photos are embedded as the run embedded its gallery
    if runtime.startswith("openvino") and not openvino_available():
        log.warning("the run embedded its images with OpenVINO, which is not installed here: using torch "
                    "(vectors agree to cosine > 0.99, not bitwise)")
        runtime = "torch"
    if runtime == "openvino" and run_dir is not None:
        return saved_network(info, run_dir, lambda: Embedder.from_spec(spec))
    if runtime == "openvino-int8":
        from ..embedding.int8 import nncf_available

        if not nncf_available():
            log.warning("the run embedded its images with the int8 runtime, which needs NNCF (pip install "
                        "'fashion[int8]'): using OpenVINO's float network (vectors close, not bitwise)")
            runtime = "openvino"
    # checks the weights' checksum against the run's
    return Embedder.from_spec(replace(spec, runtime=runtime if runtime in RUNTIMES[1:] else "torch"))


def saved_network(info: dict, run_dir, build):
    """The run's network saved as OpenVINO IR under ``run_dir`` (:mod:`fashion.embedding.ir`), saved first
    from ``build()`` (the torch embedder) when missing; that embedder itself when the run directory
    cannot take it (read-only). A trained model's weights are checked against the run's checksum."""
    from ..embedding import ir

    described = info["embedder"]
    if described.get("model_dir"):
        _check_weights(described)
    classify = _one_pass(described)
    directory = ir.ir_directory(run_dir, described, classify)
    if not ir.is_saved(directory):
        embedder = build()
        if embedder.can_classify != classify:  # the rule of _one_pass disagrees with the model: not cached
            log.warning("%s: not saved as OpenVINO IR (one-pass classifier %s, expected %s)", run_dir,
                        embedder.can_classify, classify)
            return embedder
        try:
            ir.save_embedder(embedder, directory)
        except OSError as exc:
            log.warning("%s: the OpenVINO network cannot be saved (%s): converted at every start", directory, exc)
            return embedder
        log.info("saved the run's OpenVINO network to %s", directory)
    return ir.SavedNetwork(directory, threads=INFERENCE_THREADS)


def _one_pass(described: dict) -> bool:
    """Whether the run's embedder gives its class prediction from the same pass
    (:meth:`fashion.modelio.ModelInfo.one_pass`), from model.json alone."""
    model_dir = described.get("model_dir")
    if not model_dir:
        return False
    from ..modelio import ModelInfo

    info = ModelInfo.read(model_dir)
    return info.one_pass(described.get("size") or info.input_size)


def _check_weights(described: dict) -> None:
    """The run's trained model's weights, checked against the run's checksum (as
    :meth:`fashion.embedding.Embedder.from_spec` checks them) without building the network."""
    from ..embedding.spec import EmbedderSpec
    from ..modelio import weights_file, weights_sha256

    EmbedderSpec.from_json(described).check_checksum(weights_sha256(weights_file(described["model_dir"])))
