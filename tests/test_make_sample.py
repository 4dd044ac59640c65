"""scripts/make_sample.py: build_sample makes a DeepFashion root from a clothing-dataset-small tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from fashion.datasets import load
from fashion.errors import FashionError
from fashion.images import open_image

from factories import load_script

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_sample.py"
make_sample = load_script("scripts/make_sample.py")
build_sample = make_sample.build_sample

CLASSES = ("dress", "hat", "t-shirt")


def make_source(root: Path, per_split=(5, 2, 2)) -> Path:
    """A tiny clothing-dataset-small: {train,validation,test}/<class>/*.jpg plus LICENSE and SOURCE.md."""
    for split, count in zip(("train", "validation", "test"), per_split):
        for c, cls in enumerate(CLASSES):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (40 + i, 60), (40 * c, 10 * i, 90)).save(folder / f"{split}-{i}.jpg")
            (folder / ".DS_Store").write_text("x")
    (root / "train" / "hat" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "LICENSE").write_text("CC0 1.0 Universal\n")
    (root / "SOURCE.md").write_text("# Source\nA test source.\n")
    return root


def test_build_sample(tmp_path):
    src = make_source(tmp_path / "src")
    dst = build_sample(src, tmp_path / "out", per_class=6, long_side=20, seed=3, source="all")
    items = load(dst).frame
    assert len(items) == 18
    assert list(items.drop_duplicates("label")["label"]) == ["Hat", "T-Shirt", "Dress"]  # by category type
    assert items.groupby("split").size().to_dict() == {"test": 3, "train": 12, "valid": 3}
    assert items["relpath"].iloc[0] == "img/Hat/img_00000001.jpg"
    assert all(max(open_image(p).size) == 20 for p in items["path"])
    cloth = (dst / "Anno" / "list_category_cloth.txt").read_text().splitlines()
    assert cloth[:2] == ["3", "category_name  category_type"] and cloth[2].split() == ["Hat", "1"]
    assert (dst / "LICENSE").read_text() == "CC0 1.0 Universal\n"
    source_note = (dst / "SOURCE.md").read_text()
    assert "> A test source." in source_note and "scripts/make_sample.py" in source_note
    assert "broken.jpg" not in source_note


def test_build_sample_from_the_test_split_only(tmp_path):
    """The default: every photo from the source's test split (photos the bundled model never saw), at
    most per_class a class, divided into the sample's own train / val / test statuses."""
    src = make_source(tmp_path / "src", per_split=(5, 2, 9))
    dst = build_sample(src, tmp_path / "out", per_class=7, long_side=20, seed=3)
    items = load(dst).frame
    assert len(items) == 21 and items.groupby("label").size().to_dict() == {"Dress": 7, "Hat": 7, "T-Shirt": 7}
    assert items.groupby("split").size().to_dict() == {"test": 3, "train": 15, "valid": 3}
    mapping = (dst / "SOURCE.md").read_text().split("## File mapping")[1]
    sources = [line.split("  <-  ")[1] for line in mapping.splitlines() if "  <-  " in line]
    assert len(sources) == 21 and all(s.startswith("test/") for s in sources)
    assert 'source="test"' in (dst / "SOURCE.md").read_text()
    assert "has seen none of these" in (dst / "README.md").read_text()
    few = build_sample(make_source(tmp_path / "src2", per_split=(5, 2, 4)), tmp_path / "out2", per_class=7)
    assert len(load(few)) == 12  # a class with fewer photos than per_class gives all of them


def test_build_sample_is_deterministic_and_replaces_itself(tmp_path):
    src = make_source(tmp_path / "src")
    dst = tmp_path / "out"
    build_sample(src, dst, per_class=6, long_side=20, seed=1, source="all")
    first = (dst / "SOURCE.md").read_text()
    (dst / "img" / "stale.jpg").write_bytes(b"old")
    build_sample(src, dst, per_class=6, long_side=20, seed=1, source="all")
    assert (dst / "SOURCE.md").read_text() == first
    assert not (dst / "img" / "stale.jpg").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]  # no .building/.old left
    build_sample(src, dst, per_class=6, long_side=20, seed=2, source="all")
    assert (dst / "SOURCE.md").read_text() != first


def test_build_sample_refuses_foreign_folder(tmp_path):
    src = make_source(tmp_path / "src")
    dst = tmp_path / "precious"
    dst.mkdir()
    (dst / "thesis.tex").write_text("x")
    with pytest.raises(FashionError, match="refusing"):
        build_sample(src, dst, per_class=6)
    assert (dst / "thesis.tex").exists()


def test_build_sample_bad_source(tmp_path):
    with pytest.raises(FashionError, match="missing folders"):
        build_sample(tmp_path, tmp_path / "out")
    src = make_source(tmp_path / "src", per_split=(9, 2, 1))
    with pytest.raises(FashionError, match="only 1 readable images, need 2"):
        build_sample(src, tmp_path / "out", per_class=12, source="all")
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.building").exists()
    with pytest.raises(FashionError, match="only 1 readable images, need 3"):
        build_sample(src, tmp_path / "out", per_class=12)  # from test: 1 photo a class is too few
    with pytest.raises(ValueError):
        build_sample(src, tmp_path / "out", per_class=2)
    with pytest.raises(ValueError, match="source must be one of"):
        build_sample(src, tmp_path / "out", source="valid")


def test_make_sample_command(tmp_path):
    src = make_source(tmp_path / "src")
    out = subprocess.run([sys.executable, str(SCRIPT), str(src), str(tmp_path / "out"), "--per-class", "6",
                          "--long-side", "16", "--source", "all"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert len(load(tmp_path / "out")) == 18
    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "nothing"), str(tmp_path / "out2")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "missing folders" in out.stderr and "Traceback" not in out.stderr
