"""The embedding stage's per-row and per-batch work, the same under every engine: decode a batch of
rows (:func:`decode_rows`), run the network on it (:func:`embed_pixels`, an embedder built from a
:class:`fashion.embedding.EmbedderSpec`), and make its shard table (:func:`result_table`). The engines import this
module, never the stage (:mod:`.embed`) that drives them."""

from __future__ import annotations

import numpy as np

from . import shards


def decode_rows(paths, bboxes, size: int, resize: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The reader stage (:class:`fashion.embedding.reader.ImageDataset`: the project's safe opener and
    resize) over a batch of rows: (n, 3, S, S) uint8, ok (n,), reasons (n,)."""
    from ..embedding.reader import ImageDataset

    dataset = ImageDataset(list(paths), None if bboxes is None else list(bboxes), size, resize)
    pixels = np.zeros((len(dataset), 3, size, size), dtype=np.uint8)
    ok, reasons = np.zeros(len(dataset), dtype=bool), [""] * len(dataset)
    for i in range(len(dataset)):
        image, ok[i], reasons[i], _ = dataset[i]
        pixels[i] = image.numpy()
    return pixels, ok, reasons


def embed_pixels(embedder, pixels: np.ndarray, ok: np.ndarray, reasons: list[str]) -> np.ndarray:
    """The net stage (:meth:`Embedder.forward`) on the ok rows, then the embedder's featureless check
    (rows marked failed in place). (n, d) float32."""
    import torch

    from ..embedding.embedder import reject_featureless

    vectors = np.zeros((len(ok), embedder.dim), dtype=np.float32)
    if ok.any():
        vectors[ok] = embedder.forward(torch.from_numpy(np.ascontiguousarray(pixels[ok]))).numpy()
    reject_featureless(vectors, ok, reasons)
    return vectors


def result_table(ids: np.ndarray, vectors: np.ndarray, ok: np.ndarray, reasons: list[str]):
    """One embedding shard's ``pyarrow.Table``: id int64, vector list<float32>[d], ok bool, reason string."""
    import pyarrow as pa

    return pa.table({"id": pa.array(np.asarray(ids, dtype=np.int64)), "vector": shards.vector_array(vectors),
                     "ok": pa.array(np.asarray(ok, dtype=bool)), "reason": pa.array(list(reasons), pa.string())})
