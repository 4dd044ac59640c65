"""DeepFashion In-shop Clothes Retrieval: ``list_eval_partition.txt`` (at the root or in ``Eval/``) with
rows ``image_name item_id evaluation_status`` (train/query/gallery), optional ``list_bbox_inshop.txt``.

The label is the folder that holds the item folder: ``img/WOMEN/Dresses/id_00000002/02_1_front.jpg`` →
``Dresses`` (the item folder is the last one named ``id_*``, else the image's parent folder). MEN and
WOMEN folders of the same name share a label.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DatasetError
from ..filegate import UnsafeFileError, open_regular
from .listfiles import MAX_LIST_BYTES, bbox_value, image_name_ok, index_rows, join_rows, present, read_list, split_word
from .table import Parsed

_INSHOP_SPLITS = {"train": "train", "query": "query", "gallery": "gallery"}
_INSHOP_HEADER = ("image_name", "item_id", "evaluation_status")
_INSHOP_BBOX_HEADER = ("image_name", "clothes_type", "pose_type", "x_1", "y_1", "x_2", "y_2")


def find_inshop_partition(root: Path) -> Path | None:
    """list_eval_partition.txt (root or Eval/) whose header has In-shop's three columns."""
    for path in (root / "list_eval_partition.txt", root / "Eval" / "list_eval_partition.txt"):
        if present(path):
            try:
                with open_regular(path, MAX_LIST_BYTES, what="annotation file") as f:
                    f.readline()
                    header = f.readline().decode("utf-8", "replace")
            except UnsafeFileError as exc:
                raise DatasetError(f"annotation file {exc.reason}", path) from None
            if len(header.split()) == len(_INSHOP_HEADER):
                return path
    return None


def load_inshop(root: Path) -> Parsed:
    """DeepFashion In-shop Clothes Retrieval: item ids, train/query/gallery, label from the path."""
    path = find_inshop_partition(root)
    if path is None:
        raise DatasetError("no list_eval_partition.txt with columns 'image_name item_id evaluation_status'", root)
    split_of = split_word(_INSHOP_SPLITS, path)
    images = index_rows(path, read_list(path, _INSHOP_HEADER, image_name_ok), lambda r: (r[1][1], split_of(r)))
    parsed = Parsed(path, list(images), [line for line, _ in images.values()])
    parsed.columns["label"] = [_inshop_label(name, path, line) for name, (line, _) in images.items()]
    parsed.columns["split"] = [split for _, (_, split) in images.values()]
    parsed.columns["item_id"] = [item for _, (item, _) in images.values()]
    for bbox_path in (root / "Anno" / "list_bbox_inshop.txt", root / "list_bbox_inshop.txt"):
        if present(bbox_path):
            rows = read_list(bbox_path, _INSHOP_BBOX_HEADER, image_name_ok)
            boxes = index_rows(bbox_path, rows, bbox_value(bbox_path, 3))
            parsed.columns["bbox"] = join_rows(images, boxes, path, bbox_path, "bbox", required=False)
            break
    return parsed


def _inshop_label(name: str, path: Path, line: int) -> str:
    """The folder holding the item folder (last ``id_*`` folder, else the image's parent)."""
    folders = name.split("/")[:-1]
    items = [i for i, part in enumerate(folders) if part.startswith("id_")]
    position = (items[-1] if items else len(folders) - 1) - 1
    if position < 0:
        raise DatasetError(f"cannot take a category from {name!r}: expected <category>/<item>/<image>", path, line)
    return folders[position]
