"""Where the small real sample shipped with the package lies: the default dataset of every entry point.

The sample (``fashion/data/sample``) is laid out exactly as a DeepFashion Category & Attribute
Prediction root, so every entry point reads it with the same code as the full benchmark. It is made
from clothing-dataset-small by the maintainer script ``scripts/make_sample.py`` (see the sample's
``SOURCE.md``); nothing at run time builds one.
"""

from __future__ import annotations

from pathlib import Path


def sample_root() -> Path:
    """The bundled sample's root (a DeepFashion Category root); FileNotFoundError if not installed."""
    root = Path(__file__).resolve().parent / "data" / "sample"
    if not (root / "Anno" / "list_category_img.txt").is_file():
        raise FileNotFoundError(
            f"the bundled sample is missing at {root}; rebuild it from a source checkout with "
            "`python scripts/make_sample.py /path/to/clothing-dataset-small fashion/data/sample`"
        )
    return root
