"""DeepFashion Category & Attribute Prediction: ``Anno/`` (or ``Anno_coarse/``) with
``list_category_cloth.txt``, ``list_category_img.txt``, optional ``list_bbox.txt``, and
``Eval/list_eval_partition.txt`` (train/val/test; without it every split is ``""``)."""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import DatasetError
from .listfiles import (Row, bbox_value, category_name_ok, image_name_ok, index_rows, join_rows, present, read_list,
                        split_word, to_int)
from .table import SPLIT_WORDS, Parsed

log = logging.getLogger("fashion.datasets")

_ANNO_DIRS = ("Anno", "Anno_coarse")
_CATEGORY_TYPES = (1, 2, 3)
_CLOTH_HEADER = ("category_name", "category_type")
_IMG_HEADER = ("image_name", "category_label")
_BBOX_HEADER = ("image_name", "x_1", "y_1", "x_2", "y_2")
_PARTITION_HEADER = ("image_name", "evaluation_status")


def find_anno_dir(root: Path) -> Path | None:
    """The first of Anno/, Anno_coarse/ that holds list_category_img.txt."""
    for name in _ANNO_DIRS:
        if present(root / name / "list_category_img.txt"):
            return root / name
    return None


def load_deepfashion(root: Path) -> Parsed:
    """DeepFashion Category & Attribute Prediction: categories, labels, partition, optional bboxes."""
    anno = find_anno_dir(root)
    if anno is None:
        raise DatasetError("no Anno/list_category_img.txt or Anno_coarse/list_category_img.txt", root)
    categories = _read_categories(anno / "list_category_cloth.txt")
    img_path = anno / "list_category_img.txt"

    def category(row: Row) -> int:
        line, fields = row
        cid = to_int(fields[1], "category_label", img_path, line)
        if not 1 <= cid <= len(categories):
            raise DatasetError(
                f"unknown category id {cid}, list_category_cloth.txt defines 1..{len(categories)}", img_path, line
            )
        return cid

    images = index_rows(img_path, read_list(img_path, _IMG_HEADER, image_name_ok), category)
    ids = [cid for _, cid in images.values()]
    parsed = Parsed(img_path, list(images), [line for line, _ in images.values()])
    parsed.columns["label"] = [categories[cid - 1][0] for cid in ids]
    parsed.columns["split"] = _deepfashion_splits(root, anno, images, img_path)
    parsed.columns["category_id"] = ids
    parsed.columns["category_type"] = [categories[cid - 1][1] for cid in ids]
    bbox_path = anno / "list_bbox.txt"
    if present(bbox_path):
        boxes = index_rows(bbox_path, read_list(bbox_path, _BBOX_HEADER, image_name_ok), bbox_value(bbox_path, 1))
        parsed.columns["bbox"] = join_rows(images, boxes, img_path, bbox_path, "bbox", required=False)
    return parsed


def _read_categories(path: Path) -> list[tuple[str, int]]:
    """list_category_cloth.txt → [(name, type)], category id = position + 1."""
    categories = []
    for line, (name, kind_text) in read_list(path, _CLOTH_HEADER, category_name_ok):
        kind = to_int(kind_text, "category_type", path, line)
        if kind not in _CATEGORY_TYPES:
            raise DatasetError(f"category_type must be 1, 2 or 3 (upper, lower, full body), got {kind}", path, line)
        categories.append((name, kind))
    if not categories:
        raise DatasetError("no categories defined", path, 1)
    return categories


def _deepfashion_splits(root: Path, anno: Path, images: dict, img_path: Path) -> list[str]:
    """Split of every image from Eval/ (or Anno/) list_eval_partition.txt; "" when there is none."""
    for path in (root / "Eval" / "list_eval_partition.txt", anno / "list_eval_partition.txt"):
        if present(path):
            rows = read_list(path, _PARTITION_HEADER, image_name_ok)
            splits = index_rows(path, rows, split_word(SPLIT_WORDS, path))
            return join_rows(images, splits, img_path, path, "split", required=True)
    log.warning("%s: no Eval/list_eval_partition.txt; every split is ''", root)
    return [""] * len(images)
