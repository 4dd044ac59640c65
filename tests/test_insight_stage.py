"""fashion.insight on real photos (from the bundled sample) with planted copies, in tmp_path:
each transform's copy is found, distinct photos are not, leaks are counted; ``fashion duplicates``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fashion.cli import main
from fashion.insight.calibrate import TRANSFORMS, plant_copy
from fashion.sample import sample_root

CLASSES = ("Dress", "Pants", "Shoes", "T-Shirt")
PER_CLASS = 4
ORIGINALS = (("Dress", 1), ("Shoes", 2))  # (class, photo index) of the photos that get copies


def _photo(label: str, i: int) -> Path:
    return sorted((sample_root() / "img" / label).glob("*.jpg"))[i]


@pytest.fixture(scope="module")
def planted_root(tmp_path_factory) -> Path:
    """ROOT/train/<class>/ distinct photos; ROOT/test/<class>/ copies of two train photos (one per
    transform), one byte-identical file copy, one more distinct photo and a corrupt file."""
    root = tmp_path_factory.mktemp("planted") / "root"
    for label in CLASSES:
        for i in range(PER_CLASS):
            dest = root / "train" / label / f"{label}_{i}.jpg"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(_photo(label, i), dest)
    rng = np.random.default_rng(0)
    for label, i in ORIGINALS:
        for t in TRANSFORMS:
            plant_copy(_photo(label, i), root / "test" / label / f"{label}_{i}_{t}.jpg", t, rng)
    (root / "test" / "Pants").mkdir(parents=True)
    shutil.copyfile(_photo("Pants", 0), root / "test" / "Pants" / "Pants_0_bytes.jpg")
    shutil.copyfile(_photo("Pants", 6), root / "test" / "Pants" / "Pants_6.jpg")
    (root / "test" / "Pants" / "zz_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return root


def _group(relpath: str) -> str:
    """'train/Dress/Dress_1.jpg' and 'test/Dress/Dress_1_grey.jpg' -> 'Dress_1'."""
    stem = Path(relpath).stem
    for suffix in (*TRANSFORMS, "bytes"):
        stem = stem.removesuffix(f"_{suffix}")
    return stem


# The calibrated default finds 91 % of off-centre crops (benchmarks/README.md): the stage tests check the
# transforms it finds reliably; crops are checked against a lower score in test_insight_verify.py.
FOUND = ("jpeg", "resize", "mirror", "grey")


def _check_pairs(table: pd.DataFrame, transforms=FOUND) -> None:
    groups = {f"{label}_{i}" for label, i in ORIGINALS}
    found = {(r.a_relpath, r.b_relpath) for r in table.itertuples()}
    for a, b in found:  # distinct photos are never paired
        assert _group(a) == _group(b), (a, b)
    for label, i in ORIGINALS:  # each transform's copy is paired (directly or through the cluster)
        cluster_of = {}
        for r in table.itertuples():
            cluster_of[r.a_relpath] = cluster_of[r.b_relpath] = r.cluster
        original = f"train/{label}/{label}_{i}.jpg"
        assert original in cluster_of, f"{original} has no copy found"
        for t in transforms:
            copy = f"test/{label}/{label}_{i}_{t}.jpg"
            assert cluster_of.get(copy) == cluster_of[original], f"{t} copy of {original} not found"
    assert ("test/Pants/Pants_0_bytes.jpg", "train/Pants/Pants_0.jpg") in found or \
           ("train/Pants/Pants_0.jpg", "test/Pants/Pants_0_bytes.jpg") in found
    assert len(groups) + 1 == table["cluster"].nunique()


@pytest.fixture(scope="module")
def duplicates_run(planted_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("dups") / "out"
    assert main(["-q", "duplicates", str(planted_root), "--output-dir", str(out)]) == 0
    return out


def test_cli_finds_every_planted_copy_and_no_distinct_pair(duplicates_run):
    table = pd.read_csv(duplicates_run / "duplicates.csv")
    assert list(table.columns[:8]) == ["cluster", "a_relpath", "b_relpath", "distance", "a_split", "b_split",
                                       "a_label", "b_label"]
    _check_pairs(table)
    assert (table.loc[table["method"] == "exact", "distance"] == 0).all()


def test_cli_summary_counts_leaks(duplicates_run):
    s = json.loads((duplicates_run / "duplicates.json").read_text())
    table = pd.read_csv(duplicates_run / "duplicates.csv")
    assert s["n_pairs"] == len(table)
    assert s["cross_split_pairs"] == int((table["a_split"] != table["b_split"]).sum())
    assert s["label_disagreeing_pairs"] == 0
    # every found copy in test (+ the byte copy) has its original in train; crops may be missed
    assert len(ORIGINALS) * len(FOUND) + 1 <= s["leaks"]["test_in_train"] <= len(ORIGINALS) * len(TRANSFORMS) + 1
    assert s["exact_pairs"] == 1


def test_cli_phash_method_finds_the_copies_it_can(planted_root, tmp_path):
    pytest.importorskip("imagehash")
    out = tmp_path / "ph"
    assert main(["-q", "duplicates", str(planted_root), "--output-dir", str(out), "--method", "phash",
                 "--duplicate-threshold", "4"]) == 0  # 2 bits miss some q40 re-encodes of these small photos
    table = pd.read_csv(out / "duplicates.csv")
    # a perceptual hash is not mirror-invariant and a crop moves it (benchmarks/README.md)
    _check_pairs(table, transforms=("jpeg", "resize", "grey"))
    assert set(table["method"]) <= {"phash", "exact"}


def test_cli_rejects_an_unknown_method(planted_root, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["duplicates", str(planted_root), "--output-dir", str(tmp_path / "x"), "--method", "nope"])


def test_leaks_mask_marks_the_test_copies(planted_root):
    from fashion import datasets
    from fashion.insight.leaks import leak_aware_accuracy
    from fashion.insight.stage import find_leaks

    items = datasets.load(planted_root, missing="skip").frame
    leaked = find_leaks(items)
    rel = items["relpath"].astype(str).to_numpy()
    want = {f"test/{label}/{label}_{i}_{t}.jpg" for label, i in ORIGINALS for t in FOUND}
    want.add("test/Pants/Pants_0_bytes.jpg")
    crops = {f"test/{label}/{label}_{i}_crop.jpg" for label, i in ORIGINALS}
    assert want <= set(rel[leaked]) <= want | crops
    want = set(rel[leaked])
    test = items["split"].to_numpy() == "test"
    targets = np.zeros(int(test.sum()), int)
    result = leak_aware_accuracy(targets, targets, leaked[test])
    assert result["n_leaked"] == len(want) and result["n_without_leaks"] == int(test.sum()) - len(want)


def test_measure_sim_writes_the_insight_files(planted_root, tmp_path):
    from fashion.retrieval import MeasureConfig, run

    out = tmp_path / "run"
    result = run(MeasureConfig(input=str(planted_root), output_dir=str(out), k=5, grids=1, num_workers=0))
    for name in ("duplicates.csv", "suspects.csv", "map.csv", "map.png"):
        assert (out / name).is_file(), name
    from fashion.run.reader import read_items

    items = read_items(out)
    m = pd.read_csv(out / "map.csv")
    assert list(m["id"]) == list(items.loc[items["ok"], "id"])  # one row per usable item
    assert np.isfinite(m[["x", "y"]].to_numpy()).all()
    _check_pairs(pd.read_csv(out / "duplicates.csv"))
    s = result.metrics["insight"]["duplicates"]
    assert len(ORIGINALS) * len(FOUND) + 1 <= s["leaks"]["test_in_train"] <= len(ORIGINALS) * len(TRANSFORMS) + 1
    page = (out / "index.html").read_text()
    assert "map.png" in page and "Duplicates (" in page and "duplicates/cluster_" in page


def test_measure_sim_no_insight(planted_root, tmp_path):
    from fashion.cli import measure_sim_main

    out = tmp_path / "plain"
    assert measure_sim_main(["-q", "-i", str(planted_root), "--output_dir", str(out), "--grids", "0", "-k", "3",
                             "--no-insight", "--workers", "0"]) == 0
    assert not (out / "duplicates.csv").exists() and not (out / "map.png").exists()
    assert "insight" not in json.loads((out / "metrics.json").read_text())
