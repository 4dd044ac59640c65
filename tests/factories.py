"""Builders of tiny datasets that every test shares: images, list files, DeepFashion / In-shop / folder roots.

Import as ``from factories import ...`` (``pythonpath = ["tests"]`` in pyproject.toml). Every builder
writes under the ``root`` it is given (a ``tmp_path``) and returns it.
"""

from __future__ import annotations

import pytest

import importlib.util
import io
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw

CORRUPT_JPEG = b"\xff\xd8\xff\xe0 truncated"  # a JPEG signature, then nothing decodable


def _jpeg_bytes(size=(6, 4), color=(90, 20, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "JPEG")
    return buffer.getvalue()


TINY_JPEG = _jpeg_bytes()


def tiny_jpeg(path: Path, data: bytes = TINY_JPEG) -> Path:
    """A 6 x 4 one-colour JPEG (the same bytes every time) at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def noisy_jpeg(path: Path, color, seed: int = 0, size=(48, 64), noise: float = 25.0, quality: int = 92) -> Path:
    """A ``size`` = (width, height) JPEG of ``color`` plus seeded Gaussian noise: images of one colour
    are near each other in any embedding, of different colours far apart."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(color) + rng.normal(0, noise, size=(size[1], size[0], 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=quality)
    return path


def write_list(path: Path, header: str, rows: Sequence, count: int | None = None, newline: str = "\n",
               bom: bool = False) -> Path:
    """A DeepFashion list file: the row count, the header, then the rows (strings as given, tuples
    joined by runs of spaces)."""
    lines = [str(len(rows) if count is None else count), header]
    lines += [r if isinstance(r, str) else "   ".join(str(f) for f in r) for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((("\ufeff" if bom else "") + newline.join(lines) + newline).encode("utf-8"))
    return path


CATEGORIES = [("Blouse", 1), ("Jeans", 2), ("Dress", 3)]
# (image_name, category id, evaluation_status)
DEEPFASHION_IMAGES = [
    ("img/Sheer_Blouse/img_00000001.jpg", 1, "train"),
    ("img/Sheer_Blouse/img_00000002.jpg", 1, "val"),
    ("img/Skinny_Jeans/img_00000001.jpg", 2, "test"),
    ("img/Maxi_Dress/img_00000001.jpg", 3, "train"),
]


def make_deepfashion(root: Path, images: Sequence = DEEPFASHION_IMAGES, categories: Sequence = CATEGORIES,
                     bbox: Sequence | None = None, partition: bool = True, anno: str = "Anno",
                     image: Callable[[Path], object] | None = tiny_jpeg, **list_kwargs) -> Path:
    """A DeepFashion Category root: ``Anno/`` (categories, image labels, optional ``bbox`` rows) and
    ``Eval/list_eval_partition.txt``. ``images`` rows are (image_name, category_id, status) or raw
    strings for the image list (written as they are, never created). ``image(path)`` writes each
    listed image (None: write none)."""
    write_list(root / anno / "list_category_cloth.txt", "category_name  category_type", categories)
    rows = [r if isinstance(r, str) else r[:2] for r in images]
    write_list(root / anno / "list_category_img.txt", "image_name  category_label", rows, **list_kwargs)
    if partition:
        parts = [(r[0], r[2]) for r in images if not isinstance(r, str)]
        write_list(root / "Eval" / "list_eval_partition.txt", "image_name  evaluation_status", parts)
    if bbox is not None:
        write_list(root / anno / "list_bbox.txt", "image_name  x_1  y_1  x_2  y_2", bbox)
    if image is not None:
        for r in images:
            if not isinstance(r, str):
                image(root / r[0])
    return root


INSHOP_ROWS = [
    ("img/WOMEN/Dresses/id_00000002/02_1_front.jpg", "id_00000002", "train"),
    ("img/WOMEN/Dresses/id_00000002/02_2_side.jpg", "id_00000002", "query"),
    ("img/MEN/Denim/id_00000080/01_1_front.jpg", "id_00000080", "gallery"),
]


def make_inshop(root: Path, rows: Sequence = INSHOP_ROWS, in_eval: bool = False,
                image: Callable[[Path], object] | None = tiny_jpeg, **list_kwargs) -> Path:
    """An In-shop root: ``[Eval/]list_eval_partition.txt`` of (image_name, item_id, status) rows (or raw
    strings), and the images (``image(path)``; None: none)."""
    target = root / "Eval" / "list_eval_partition.txt" if in_eval else root / "list_eval_partition.txt"
    write_list(target, "image_name  item_id  evaluation_status", rows, **list_kwargs)
    if image is not None:
        for row in rows:
            if not isinstance(row, str):
                image(root / row[0])
    return root


def make_folder(root: Path, colors: dict, per_class: int, splits: Sequence[str] = ("",), seed: int = 0,
                size=(48, 64), noise: float = 25.0) -> Path:
    """An image-folder root: ``[split/]<label>/<label>_<i>.jpg``, ``per_class`` noisy JPEGs of each
    label's colour (``colors``: label → RGB); image ``i`` of label ``c`` is seeded ``seed + 100 c + i``."""
    for split in splits:
        for c, (label, color) in enumerate(colors.items()):
            for i in range(per_class):
                noisy_jpeg(root / split / label / f"{label}_{i}.jpg", color, seed=seed + 100 * c + i, size=size,
                           noise=noise)
    return root


def make_photo_folder(root: Path, n: int = 24, corrupt: bool = True) -> Path:
    """``n`` bundled sample photos (spread over its classes) in a folder dataset ``<label>/<i>.jpg``, plus
    one corrupt JPEG (``zz_corrupt.jpg``) when ``corrupt``; returns the root."""
    import shutil

    from fashion import sample

    photos = sorted(sample.sample_root().glob("img/*/*.jpg"))[:: max(1, 240 // n)][:n]
    for i, src in enumerate(photos):
        dest = root / src.parent.name / f"{i:04d}.jpg"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dest)
    if corrupt:
        (root / photos[0].parent.name / "zz_corrupt.jpg").write_bytes(CORRUPT_JPEG)
    return root


def make_verbs_run(data: Path, run_dir: Path, k: int = 3, embed_args: Sequence[str] = (),
                   knn_args: Sequence[str] = ()) -> Path:
    """A run of the sharded verbs over ``data``: ``fashion manifest → embed → index → knn`` (CLI), each
    one asserted to succeed; returns ``run_dir`` (sealed as a run of format 2 by the last one)."""
    from fashion import cli

    for argv in (["manifest", str(data), "--output-dir", str(run_dir)],
                 ["embed", str(run_dir), "--runtime", "torch", *embed_args],
                 ["index", str(run_dir)],
                 ["knn", str(run_dir), "-k", str(k), *knn_args]):
        assert cli.main(argv) == 0, argv
    return run_dir


def seal_work(run_dir: Path, k: int, executor=None):
    """``fashion knn``'s range (search → seal) of the orchestrator over ``run_dir``, whose manifest,
    embeddings and on-disk index are already written, with ``executor`` (None: the local engine's); the
    work sub-directories stay beside the run and resume. Returns the :class:`fashion.runresult.RunResult`."""
    from fashion.pipeline.config import MeasureConfig
    from fashion.pipeline.index import ON_DISK
    from fashion.pipeline.measure import VERBS, measure

    config = MeasureConfig(output_dir=str(run_dir), k=k, index=ON_DISK)
    return measure(config, executor, VERBS["knn"], work_dir=run_dir, arguments={"k": k})


def read_run_items(run_dir: Path):
    """A run's item table (the format's reader, unverified): DataFrame with id, path, relpath, label …"""
    from fashion.run.reader import read_items

    return read_items(run_dir)


def write_run_items(run_dir: Path, items) -> None:
    """Replace a run's item table with ``items`` (a crafted run: reseal its manifest to get past it)."""
    import shutil

    from fashion.run.writer import write_items

    shutil.rmtree(run_dir / "items")
    write_items(run_dir, items.reset_index(drop=True))


def read_run_neighbors(run_dir: Path):
    """A run's neighbour lists (query_id, rank, neighbor_id, distance; by query, then rank)."""
    from fashion.run.reader import read_neighbors

    return read_neighbors(run_dir)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op torch thread for a training test module (import it there; autouse): on a shared 2-core
    machine spinning OpenMP threads slow tiny batches 10x."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# --- garments of a known colour (fashion.colour) ---------------------------------------------------

# How each family's garments look in a phone photo (sRGB; navy: the median of the dev photos labelled navy,
# Lab (17, 2, -9)): what a synthetic garment is painted with.
PHOTO_COLOURS = {
    "black": (28, 28, 30), "white": (236, 236, 232), "grey": (128, 128, 130), "beige": (200, 182, 150),
    "brown": (105, 70, 45), "red": (170, 30, 35), "pink": (225, 110, 160), "orange": (225, 120, 40),
    "yellow": (235, 200, 40), "green": (40, 130, 60), "blue": (60, 110, 190), "navy": (38, 42, 55),
    "purple": (100, 50, 130),
}


def garment_background(kind: str, size=(300, 400), seed: int = 0) -> np.ndarray:
    """A (h, w, 3) float background a garment lies on: a white sheet, a wood floor or grey tiles."""
    rng = np.random.default_rng(seed)
    w, h = size
    if kind == "sheet":  # a white sheet with soft folds
        yy, xx = np.mgrid[0:h, 0:w]
        base = 225 + 12 * np.sin(xx / 23.0) * np.cos(yy / 31.0)
        rgb = np.stack([base, base, base - 4], -1)
    elif kind == "wood":  # a textured light-wood floor: planks of slightly different tones and grain
        plank = (np.arange(w) // 50) % 3
        tone = np.array([[190, 150, 110], [175, 135, 95], [200, 160, 120]])[plank]
        rgb = np.broadcast_to(tone[None, :, :], (h, w, 3)).astype(float).copy()
        rgb += rng.normal(0, 8, (h, w, 1))
    elif kind == "tiles":  # grey tiles with darker grout
        rgb = np.full((h, w, 3), 150.0)
        rgb[::40] = 90
        rgb[:, ::40] = 90
    else:
        raise ValueError(kind)
    return rgb + rng.normal(0, 4, (h, w, 3))


def garment_photo(colour, background: str, seed: int = 0, shape: str = "tee", size=(300, 400)) -> Image.Image:
    """A garment of ``colour`` (sRGB) with shading and fabric noise on ``background`` (sheet, wood, tiles);
    ``shape``: tee or (else) an ellipse. A PIL image."""
    w, h = size
    rgb = garment_background(background, size, seed)
    mask_image = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask_image)
    if shape == "tee":
        draw.polygon([(0.3 * w, 0.2 * h), (0.7 * w, 0.2 * h), (0.9 * w, 0.35 * h), (0.8 * w, 0.45 * h),
                      (0.7 * w, 0.4 * h), (0.7 * w, 0.85 * h), (0.3 * w, 0.85 * h), (0.3 * w, 0.4 * h),
                      (0.2 * w, 0.45 * h), (0.1 * w, 0.35 * h)], fill=255)
    else:
        draw.ellipse((0.25 * w, 0.25 * h, 0.75 * w, 0.75 * h), fill=255)
    mask = np.asarray(mask_image) > 0
    rng = np.random.default_rng(seed + 1)
    yy, _ = np.mgrid[0:h, 0:w]
    shading = 1.0 - 0.15 * (yy / h)  # light from the top
    garment = np.asarray(colour, dtype=float)[None, None, :] * shading[..., None] + rng.normal(0, 5, (h, w, 3))
    rgb[mask] = garment[mask]
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def make_garment_folder(root: Path, families: Sequence[str], shapes: Sequence[str] = ("tee", "ball"),
                        per_family: int = 2, size=(120, 160)) -> Path:
    """An image-folder root ``<shape>/<family>_<i>.jpg``: ``per_family`` garments of each family's colour
    (:data:`PHOTO_COLOURS`) in each shape (the label), on a white sheet (odd i) or a wood floor (even i)."""
    for shape in shapes:
        for f, family in enumerate(families):
            for i in range(per_family):
                path = root / shape / f"{family}_{i}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                garment_photo(PHOTO_COLOURS[family], "sheet" if i % 2 else "wood", seed=10 * f + i, shape=shape,
                              size=size).save(path, quality=92)
    return root


def make_vector_run(run_dir: Path, n: int = 60, d: int = 16, k: int = 3, seed: int = 0) -> Path:
    """A sealed run of ``n`` random unit vectors in 3 labels, no photos and no network (exact index,
    all-pairs, ``k``): what the live catalogue's tests change with ``fashion.catalog.state`` directly."""
    import pandas as pd

    from fashion import rundir
    from fashion.atomic import write_json
    from fashion.neighbors import build_index
    from fashion.retrieval import compute_metrics
    from fashion.run import layout, writer

    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, d)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = [f"label{i % 3}" for i in range(n)]
    frame = pd.DataFrame({"path": [str(run_dir.parent / "photos" / f"{i}.jpg") for i in range(n)],
                          "relpath": [f"{label}/{i}.jpg" for i, label in enumerate(labels)], "label": labels,
                          "split": ""})
    items = writer.item_table(frame, np.ones(n, bool), [""] * n, np.array(["both"] * n, dtype=object))
    index = build_index("exact").fit(vectors)
    dist, ids = index.kneighbors(None, n_neighbors=k)
    arguments = {"k": k, "index": "exact", "metric": "cosine", "grids": 0, "seed": 0, "insight": False}
    with rundir.transaction(run_dir, kind=layout.RUN_KIND) as txn:
        writer.write_items(txn.path, items)
        writer.write_embeddings(txn.path, vectors)
        writer.write_neighbors(txn.path, np.arange(n), dist, ids)
        _, ref = writer.write_index_npz(txn.path, index, np.arange(n))
        writer.write_run_json(txn.path, txn.run_id, ref, n, {
            "arguments": arguments, "dataset": {"root": str(run_dir.parent), "format": "folder", "n_items": n},
            "embedder": {"checksum": "none", "arch": "none"}})
        write_json(txn.path / layout.METRICS_JSON, {**compute_metrics(items, np.arange(n), ids, k), "k": k,
                                                    "index": "exact", "mode": "all-pairs", "n_images": n, "n_ok": n,
                                                    "n_queries": n, "n_gallery": n, "skipped": [], "timing": {}})
    return run_dir


def make_ivfpq_run(run_dir: Path, vectors: np.ndarray, k: int = 3, factory: str = "auto", nprobe: int | None = None,
                   seed: int = 0) -> Path:
    """A sealed run of ``vectors`` (unit-normalised here; 3 labels, no photos) with the on-disk IVF-PQ
    index of fashion.scale (``--index ivfpq-disk``; ``factory``, and ``nprobe`` written into its
    index.json), all-pairs lists of ``k`` searched through it: what the live catalogue's tests change."""
    import json

    import pandas as pd
    import pyarrow as pa

    from fashion import rundir
    from fashion.atomic import write_json
    from fashion.catalog.kept import OnDisk
    from fashion.catalog.lists import search
    from fashion.retrieval import compute_metrics
    from fashion.run import layout, writer
    from fashion.scale import ivfpq, shards
    from fashion.scale.delta import LiveIndex

    vectors = np.asarray(vectors, np.float32)
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    n, d = vectors.shape
    work = run_dir.parent / f"{run_dir.name}-work"
    shards.write_shard(work / "embeddings", pa.table({"id": pa.array(np.arange(n), pa.int64()),
                                                      "ok": pa.array(np.ones(n, bool)),
                                                      "vector": shards.vector_array(vectors)}))
    params = ivfpq.build(work / "embeddings", work / "index", id_space=n, seed=seed, factory=factory)
    if nprobe is not None:
        meta = work / "index" / ivfpq.INDEX_JSON
        write_json(meta, {**json.loads(meta.read_text()), "nprobe": int(nprobe)})
    labels = [f"label{i % 3}" for i in range(n)]
    frame = pd.DataFrame({"path": [str(run_dir.parent / "photos" / f"{i}.jpg") for i in range(n)],
                          "relpath": [f"{label}/{i}.jpg" for i, label in enumerate(labels)], "label": labels,
                          "split": ""})
    items = writer.item_table(frame, np.ones(n, bool), [""] * n, np.array(["both"] * n, dtype=object))
    arguments = {"k": k, "index": "ivfpq-disk", "metric": "cosine", "grids": 0, "seed": 0, "insight": False}
    with rundir.transaction(run_dir, kind=layout.RUN_KIND) as txn:
        writer.write_items(txn.path, items)
        writer.write_embeddings(txn.path, vectors)
        _, ref = writer.link_ivfpq(txn.path, work / "index", params.count)
        index = OnDisk(LiveIndex(txn.path / layout.IVFPQ_DIR), np.arange(n))
        lists = search(index, np.arange(n), vectors, np.arange(n), k, True)
        writer.write_neighbors(txn.path, lists.query_ids, lists.dist, lists.ids)
        writer.write_run_json(txn.path, txn.run_id, ref, n, {
            "arguments": arguments, "dataset": {"root": str(run_dir.parent), "format": "folder", "n_items": n},
            "embedder": {"checksum": "none", "arch": "none"}})
        write_json(txn.path / layout.METRICS_JSON, {**compute_metrics(items, lists.query_ids, lists.ids, k), "k": k,
                                                    "index": "faiss-ivfpq", "mode": "all-pairs", "n_images": n,
                                                    "n_ok": n, "n_queries": n, "n_gallery": n, "skipped": [],
                                                    "timing": {}})
    return run_dir


def add_vectors(run_dir: Path, vectors: np.ndarray) -> np.ndarray:
    """Append ``vectors`` to a run as new items (label0, no photos) and commit the change (a new sealed
    version), as ``fashion add`` does after embedding; returns their ids."""
    import pandas as pd

    from fashion.catalog import state, versions

    with versions.writer(run_dir):
        cat = state.load(run_dir)
        n = len(cat.items)
        frame = pd.DataFrame({"path": [f"/new/{n + i}.jpg" for i in range(len(vectors))],
                              "relpath": [f"label0/new{n + i}.jpg" for i in range(len(vectors))],
                              "label": "label0", "split": ""})
        ids = state.append(cat, frame, vectors, np.ones(len(vectors), bool), [""] * len(vectors))
        state.commit(cat, {"op": "add", "count": len(ids)}, added=ids)
    return ids


def load_script(relpath: str):
    """A repository script (``scripts/NAME.py``, ``benchmarks/NAME.py``: not a package) imported as the module
    NAME, registered in ``sys.modules`` (its dataclasses look themselves up there)."""
    path = Path(__file__).resolve().parents[1] / relpath
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = sys.modules[path.stem] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
