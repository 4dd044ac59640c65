"""The reader stage: items → decoded, resized uint8 batches (torch DataLoader over worker processes).

Workers decode and resize and ship uint8 tensors (4× less inter-process traffic than float). A bad
image never raises: its row comes back with ``ok=False`` and the reason, so a worker survives corrupt
files and the caller counts and lists them.
"""

from __future__ import annotations

import os
from typing import Sequence

from ..datasets import bbox_or_none
from ..images import open_image
from ..resize import resize_image


def default_num_workers() -> int:
    """DataLoader workers: one core is left to the network's threads; 0 (in-process) on one core."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(4, max(0, cores - 1))


class ImageDataset:
    """torch map-style dataset: index → (uint8 (3, S, S) tensor, ok, reason, index)."""

    def __init__(self, paths: Sequence[str], bboxes: Sequence | None, size: int, resize: str = "crop"):
        self.paths, self.bboxes, self.size, self.resize = list(paths), bboxes, size, resize

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        import torch

        path = self.paths[i]
        try:
            bbox = None if self.bboxes is None else self.bboxes[i]
            pixels = resize_image(open_image(path, bbox=bbox), self.size, self.resize)
            return torch.from_numpy(pixels).permute(2, 0, 1).contiguous(), True, "", i
        except Exception as exc:  # noqa: BLE001 - any failure of one image must not end the run
            reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
            return torch.zeros((3, self.size, self.size), dtype=torch.uint8), False, str(reason), i


def batches(dataset: ImageDataset, rows: Sequence[int], batch_size: int, num_workers: int | None = None):
    """A DataLoader over ``rows`` of ``dataset`` in order: yields (uint8 images, ok, reasons, row index).

    num_workers: None = :func:`default_num_workers`; never more workers than there are whole batches.
    """
    from torch.utils.data import DataLoader, Subset

    workers = default_num_workers() if num_workers is None else max(0, int(num_workers))
    workers = min(workers, max(0, len(rows) // batch_size))  # no idle processes for tiny jobs
    return DataLoader(Subset(dataset, list(rows)), batch_size=batch_size, shuffle=False, num_workers=workers,
                      persistent_workers=False, prefetch_factor=4 if workers else None)


def paths_and_boxes(items, crop: bool) -> tuple[list[str], list | None]:
    """(paths, bboxes or None) from a DataFrame with a ``path`` (and ``bbox``) column or a list of paths."""
    if hasattr(items, "columns"):
        if "path" not in items.columns:
            raise ValueError(f"items need a 'path' column, got columns {list(items.columns)}")
        paths = [os.fspath(p) for p in items["path"]]
        bboxes = None
        if crop and "bbox" in items.columns:
            bboxes = [bbox_or_none(b) for b in items["bbox"]]
        return paths, bboxes
    if isinstance(items, (str, os.PathLike)):
        raise TypeError("items must be a DataFrame or a list of paths, not a single path")
    return [os.fspath(p) for p in items], None
