"""What the service reads besides the run itself (which :func:`fashion.run.reader.open_run` reads and
checks): the embedder rebuilt with the run's exact settings (:func:`embedder_for`), and the trained
model's reports (:func:`read_model_reports`).
"""

from __future__ import annotations

import logging
from pathlib import Path


log = logging.getLogger("fashion.service")

SUSPECTS_FILE = "suspect_labels.csv"  # in the trained model's directory
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


def embedder_for(info: dict):
    """Rebuild the run's embedder from run.json; refuse when its weights are not the ones the run used."""
    from dataclasses import replace

    from ..embedding import RUNTIMES, Embedder, EmbedderSpec, openvino_available

    spec = EmbedderSpec.from_json(info["embedder"])
    runtime = spec.runtime  # the photos are embedded as the run embedded its gallery
    if runtime.startswith("openvino") and not openvino_available():
        log.warning("the run embedded its images with OpenVINO, which is not installed here: using torch "
                    "(vectors agree to cosine > 0.99, not bitwise)")
        runtime = "torch"
    if runtime == "openvino-int8":
        from ..embedding.int8 import nncf_available

        if not nncf_available():
            log.warning("the run embedded its images with the int8 runtime, which needs NNCF (pip install "
                        "'fashion[int8]'): using OpenVINO's float network (vectors close, not bitwise)")
            runtime = "openvino"
    # checks the weights' checksum against the run's
    return Embedder.from_spec(replace(spec, runtime=runtime if runtime in RUNTIMES[1:] else "torch"))

