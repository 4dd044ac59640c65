#!/usr/bin/env python
"""Ship a finished `fashion train` run as the package's bundled clothing model (``fashion/data/model``).

A maintainer's tool, as ``scripts/make_sample.py``: nothing at run time builds the model, every entry
point only reads the bundled one (:func:`fashion.modelio.bundled_model_dir`)::

    python scripts/bundle_model.py /work/runs/bundled-lite0 fashion/data/model --data /path/to/clothing-dataset-small

Writes, replacing ``DST`` as a whole:

- ``model.safetensors``: the run's weights, floating tensors stored as float16 (``--dtype float32``
  keeps them as trained; ``--dtype int8`` stores weight matrices and kernels as int8 with a scale per
  output channel, :mod:`fashion.modelio.storage`); :func:`fashion.modelio.load_model` loads them into
  the float32 network;
- ``model.json``: the run's, unchanged;
- ``fp16_check.json`` (``int8_check.json``, ``fp32_check.json`` for the other types): with ``--data``,
  the test split's top-1 and that of its perturbed photos (:mod:`fashion.training.robustness`) for the
  run's float32 weights and the stored ones, the largest difference of a class probability and the
  number of photos whose predicted class changed.

The model card (``DST/README.md``) is written by hand from the run's figures; this script keeps it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from pathlib import Path

from fashion.modelio import CONFIG_FILE, DTYPES, WEIGHTS_FILE, ModelInfo, load_model, save_state_dict, stored_state

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the sibling maintainer script
from make_sample import report, swap_in  # noqa: E402

log = logging.getLogger("bundle_model")

CARD = "README.md"


def bundle_model(run_dir, dst, dtype: str = "float16", data=None) -> Path:
    """Copy the model of ``run_dir`` to ``dst`` with its floating tensors as ``dtype``; return ``dst``.

    ``data``: a clothing-dataset-small root whose ``test`` split the stored weights are checked on
    against the run's (:func:`check_file`)."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    run_dir, dst = Path(run_dir), Path(dst)
    ModelInfo.read(run_dir)  # a model.json this fashion reads, before anything is written
    loaded = load_model(run_dir)
    building = dst.with_name(f".{dst.name}.building")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    try:
        stored = stored_state(loaded.model.state_dict(), dtype)
        save_state_dict(building / WEIGHTS_FILE, stored)
        shutil.copyfile(run_dir / CONFIG_FILE, building / CONFIG_FILE)
        if (dst / CARD).is_file():
            shutil.copyfile(dst / CARD, building / CARD)
        if data is not None:
            check = precision_check(loaded, load_model(building), data)
            (building / check_file(dtype)).write_text(json.dumps(check, indent=2) + "\n", encoding="utf-8")
            log.info("stored weights vs the run's: %s", json.dumps(check))
        swap_in(building, dst)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    size = (dst / WEIGHTS_FILE).stat().st_size
    log.info("wrote %s (%.1f MB, %s)", dst / WEIGHTS_FILE, size / 1e6, dtype)
    return dst


def check_file(dtype: str) -> str:
    """The name of the stored-weights check for ``dtype``: ``fp16_check.json`` for the bundled float16."""
    return {"float32": "fp32", "float16": "fp16"}.get(dtype, dtype) + "_check.json"


def precision_check(reference, stored, data) -> dict:
    """Top-1 of two loaded models on the test split of ``data`` (plain and perturbed photos), the
    largest class-probability difference and how many predictions differ."""
    import numpy as np

    from fashion import datasets
    from fashion.images import open_image
    from fashion.training.robustness import perturbed_probs

    frame = datasets.load(data, format="folder").frame
    test = frame[frame["split"] == "test"].reset_index(drop=True)
    classes = list(reference.classes)
    targets = np.array([classes.index(label) for label in test["label"]])
    out = {"n": int(len(test))}
    for name, model in (("run", reference), ("stored", stored)):
        probs = np.concatenate([model.predict([open_image(p) for p in test["path"][i:i + 32]]).numpy()
                                for i in range(0, len(test), 32)])
        perturbed = perturbed_probs(model.model, test, model.size, model.info.mean, model.info.std)
        out[name] = {"top1": float((probs.argmax(1) == targets).mean()),
                     "perturbed_top1": float((perturbed.argmax(1) == targets).mean())}
        out[f"_{name}"] = probs
    a, b = out.pop("_run"), out.pop("_stored")
    out["max_prob_difference"] = float(np.abs(a - b).max())
    out["changed_predictions"] = int((a.argmax(1) != b.argmax(1)).sum())
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", metavar="RUN", help="a finished `fashion train` output directory")
    parser.add_argument("dest", metavar="DST", help="where the bundled model goes (fashion/data/model)")
    parser.add_argument("--dtype", default="float16", choices=DTYPES, help="storage type of the floating tensors")
    parser.add_argument("--data", default=None, metavar="ROOT",
                        help="clothing-dataset-small root: check the stored weights on its test split")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return report("bundle_model.py", lambda: bundle_model(args.run_dir, args.dest, dtype=args.dtype, data=args.data))


if __name__ == "__main__":
    sys.exit(main())
