"""Leak-aware evaluation: the pure function, and the hook in ``fashion train``'s evaluate step on a tiny run
whose test split holds a byte copy and a mirrored copy of two train photos."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from fashion.insight.calibrate import plant_copy
from fashion.insight.leaks import leak_aware_accuracy
from fashion.sample import sample_root


def test_leak_aware_accuracy_edge_cases():
    r = leak_aware_accuracy(np.array([1, 1]), np.array([1, 0]), np.array([True, True]))
    assert r["accuracy"] == 0.5 and r["accuracy_without_leaks"] is None and r["n_without_leaks"] == 0
    r = leak_aware_accuracy(np.array([1, 1]), np.array([1, 0]), np.array([False, False]))
    assert r["accuracy_without_leaks"] == r["accuracy"] == 0.5 and r["accuracy_leaked"] is None
    with pytest.raises(ValueError):
        leak_aware_accuracy(np.array([1]), np.array([1, 0]), np.array([False]))


@pytest.fixture(scope="module")
def leaky_root(tmp_path_factory):
    """3 classes x (4 train, 2 valid, 2 test) sample photos; test also holds a byte copy of a train photo
    and a mirrored copy of another. Returns (items, the two copies' paths)."""
    root = tmp_path_factory.mktemp("leaky")
    rows = []
    for label in ("Hat", "Shoes", "Pants"):
        photos = sorted((sample_root() / "img" / label).glob("*.jpg"))
        for split, chosen in (("train", photos[:4]), ("valid", photos[4:6]), ("test", photos[6:8])):
            for p in chosen:
                dest = root / split / label / p.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(p, dest)
                rows.append({"path": str(dest), "label": label, "split": split})
    copies = [shutil.copyfile(rows[0]["path"], root / "test" / "Hat" / "copy.jpg"),
              plant_copy(rows[8]["path"], root / "test" / "Shoes" / "mirror.jpg", "mirror")]
    rows += [{"path": str(copies[0]), "label": "Hat", "split": "test"},
             {"path": str(copies[1]), "label": "Shoes", "split": "test"}]
    return pd.DataFrame(rows), {str(c) for c in copies}


def test_leak_report_counts_the_copies(leaky_root):
    from fashion.insight.stage import leak_report

    items, copies = leaky_root
    split = {s: items[items["split"] == s].reset_index(drop=True) for s in ("train", "valid", "test")}
    targets = np.zeros(len(split["test"]), int)
    preds = np.where(split["test"]["path"].isin(copies), 0, 1)  # right only on the leaked photos
    r = leak_report(split["train"], split["valid"], split["test"], targets, preds)
    assert r["n_leaked"] == 2 and r["accuracy_leaked"] == 1.0 and r["accuracy_without_leaks"] == 0.0
    r = leak_report(split["train"], split["valid"], split["valid"], np.zeros(len(split["valid"]), int),
                    np.zeros(len(split["valid"]), int), test_split="valid")
    assert r["n_leaked"] == 0 and r["against"] == ["train"]


@pytest.fixture(scope="module")
def leaky_run(leaky_root, tmp_path_factory):
    from fashion import training

    items, copies = leaky_root
    out = tmp_path_factory.mktemp("run")
    config = training.TrainConfig(size=32, final_size=32, epochs=(1, 0, 0), batch_size=4, lr_find_iters=3, seed=0)
    training.train(items, config, out)
    return out, copies


@pytest.mark.slow  # a (tiny) training run: minutes on the shared cores
def test_train_reports_the_leaked_test_photos_and_the_accuracy_without_them(leaky_run):
    out, copies = leaky_run
    leaks = json.loads((out / "metrics.json").read_text())["test"]["leaks"]
    assert leaks["n_leaked"] == 2 and leaks["n"] == 8 and leaks["n_without_leaks"] == 6
    pred = pd.read_csv(out / "test_predictions.csv")
    right = (pred["label"] == pred["predicted"]).to_numpy()
    leaked = pred["path"].isin(copies).to_numpy()
    assert leaks["accuracy"] == pytest.approx(right.mean())
    assert leaks["accuracy_without_leaks"] == pytest.approx(right[~leaked].mean())
    assert leaks["against"] == ["train", "valid"]
