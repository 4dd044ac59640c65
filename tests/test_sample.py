"""fashion.sample: the bundled sample loads and opens (its builder: tests/test_make_sample.py)."""

from __future__ import annotations

from fashion.datasets import detect_format, load
from fashion.images import open_image
from fashion.sample import sample_root


def test_bundled_sample_loads_and_opens():
    root = sample_root()
    assert detect_format(root) == "deepfashion"
    items = load(root).frame
    assert items["label"].nunique() == 10
    assert set(items["split"]) == {"train", "valid", "test"}
    assert len(items) == 372  # the whole test split of clothing-dataset-small
    assert set(items["category_type"]) == {1, 2, 3}
    for path in items["path"]:
        image = open_image(path)
        assert image.mode == "RGB" and max(image.size) == 300
    for name in ("README.md", "SOURCE.md", "LICENSE"):
        assert (root / name).is_file()
    assert not (root.parent / "__init__.py").exists()  # package data, not a package


def test_bundled_sample_is_small():
    total = sum(p.stat().st_size for p in sample_root().rglob("*") if p.is_file())
    assert total < 5_000_000
