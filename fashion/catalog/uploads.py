"""Changes that arrive as bytes and values rather than files the caller names (the write API, issue 28 item 7).

- :func:`store`: a photo's bytes through the image gate (:func:`fashion.images.image_info` for the header
  and ``max_pixels``, then a strict decode, as photo search does), stored content-addressed inside the run:
  ``RUN.versions/uploads/<sha256>.<ext>``, the extension from the format the header shows (never a name a
  client gave). Written atomically; the same bytes twice are one file.
- :func:`add_photos`: store them and :func:`fashion.catalog.add.add` them (label, split and metadata
  columns from the request's fields), one new version;
- :func:`patch_item`: one item's metadata columns changed (:func:`fashion.catalog.metadata.update_run`).
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from ..errors import ConfigError
from ..run import layout

log = logging.getLogger(__name__)

OWN_FIELDS = ("label", "split")  # request fields that are item columns; the others are metadata


def extension(image_format: str) -> str:
    """The file extension of a Pillow format name (JPEG → .jpg)."""
    from ..images import FORMATS_BY_EXTENSION

    for ext, formats in FORMATS_BY_EXTENSION.items():
        if image_format in formats:
            return ext
    raise ConfigError(f"no file extension for image format {image_format!r}")


def store(run_dir, data: bytes, max_pixels: int | None = None, name: str = "<upload>") -> Path:
    """Check ``data`` is a usable image (:class:`~fashion.errors.ImageError` when not) and store it as
    ``RUN.versions/uploads/<sha256>.<ext>``; returns the path."""
    from ..atomic import atomic_write
    from ..images import image_info, open_image_bytes

    found = image_info(name, data, max_pixels=max_pixels)
    open_image_bytes(data, name, max_pixels=max_pixels, strict=True)  # damaged data is refused, as search does
    path = layout.uploads_dir(run_dir) / f"{hashlib.sha256(data).hexdigest()}{extension(found.format)}"
    if not path.is_file():
        with atomic_write(path) as f:
            f.write(data)
    return path


def _field_table(key: str, keys: list, fields: dict, source: str):
    """A metadata table (:func:`fashion.catalog.metadata.checked_table`) of ``fields`` for each key."""
    import pandas as pd

    from .metadata import checked_table

    columns = {name: [None if value is None else str(value)] * len(keys) for name, value in fields.items()}
    return checked_table(pd.DataFrame({key: keys, **columns}), source)


def add_photos(run_dir, photos: list[bytes], fields: dict, max_pixels: int | None = None,
               wait: float = 0.0):
    """Store ``photos`` (:func:`store`) and add them to the run as one new version; ``fields``: ``label``
    and ``split`` of the new items, every other field a metadata column of theirs (typed as a metadata
    file's). Returns the :class:`~fashion.catalog.add.AddResult` (duplicates: photos already in the run)."""
    import pandas as pd

    from .add import add

    own = {name: str(fields.get(name) or "") for name in OWN_FIELDS}
    shop = {name: value for name, value in fields.items() if name not in OWN_FIELDS}
    paths = [store(run_dir, data, max_pixels, name=f"photo {i + 1}") for i, data in enumerate(photos)]
    relpaths = [f"{layout.UPLOADS_DIR}/{p.name}" for p in paths]
    frame = pd.DataFrame({"path": [str(p) for p in paths], "relpath": relpaths,
                          "label": own["label"], "split": own["split"]}).drop_duplicates("path")
    table = _field_table("relpath", frame["relpath"].tolist(), shop, "the request's fields") if shop else None
    return add(run_dir, frame.reset_index(drop=True), metadata=table, wait=wait)


def patch_item(run_dir, item_id: int, values: dict, wait: float = 0.0) -> dict:
    """Change item ``item_id``'s metadata columns to ``values`` ({column: value}; typed as a metadata
    file's, None empties a cell) in a new version; ConfigError when the id is not a live item."""
    from ..run.reader import open_run
    from .metadata import update_run

    run = open_run(run_dir, load_index=False)
    if not 0 <= int(item_id) < len(run.items) or run.items["role"].iat[int(item_id)] == "removed":
        raise ConfigError(f"{run_dir}: no item with id {item_id}")
    if not values:
        raise ConfigError("nothing to change: give one or more metadata columns")
    return update_run(run_dir, _field_table("id", [int(item_id)], values, f"item {item_id}'s fields"), wait=wait)
