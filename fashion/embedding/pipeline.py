"""reader → net → writer: the loop that fills an embedding result batch by batch, each stage timed.

The stages are separate callables (:func:`fashion.embedding.reader.batches`, a runtime from
:mod:`fashion.embedding.net`, :class:`fashion.embedding.cache.ChunkCache`), so another engine can run
the same three in other processes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .cache import ChunkCache
from .reader import ImageDataset, batches


@dataclass
class Rows:
    """The (n, d) result being filled in place: vectors, ok flags, failure reasons."""

    vectors: np.ndarray
    ok: np.ndarray
    reasons: list[str]


@dataclass
class StageTimes:
    """Seconds spent waiting for the reader, in the network and writing cache chunks."""

    read: float = 0.0
    net: float = 0.0
    write: float = 0.0
    batches: int = 0

    def as_dict(self) -> dict:
        return {"read": round(self.read, 4), "net": round(self.net, 4), "write": round(self.write, 4)}


@dataclass
class Writer:
    """Writes a cache chunk every ``per_chunk`` batches (whole batches: a resumed run feeds the network
    the same batches as an uninterrupted one, so its vectors are bitwise identical)."""

    cache: ChunkCache | None
    keys: Sequence[str | None]
    per_chunk: int
    pending: list[int] = field(default_factory=list)

    def add(self, rows: list[int], out: Rows, n_batch: int) -> None:
        if self.cache is None:
            return
        self.pending += rows
        if self.cache is not None and n_batch % self.per_chunk == 0:
            self.flush(out)

    def flush(self, out: Rows) -> None:
        kept = [i for i in self.pending if self.keys[i] is not None]  # unstat-able files are retried next time
        if self.cache is not None and kept:
            self.cache.write([self.keys[i] for i in kept], out.vectors[kept], out.ok[kept],
                             [out.reasons[i] for i in kept])
        self.pending = []


def run(dataset: ImageDataset, todo: Sequence[int], forward: Callable, out: Rows, writer: Writer,
        batch_size: int, num_workers: int | None, progress: bool) -> StageTimes:
    """Embed the ``todo`` rows of ``dataset`` with ``forward`` (uint8 tensor → float32 tensor), filling
    ``out`` in place and handing every batch to ``writer``; returns the time of each stage."""
    import torch
    from tqdm.auto import tqdm

    times = StageTimes()
    loader = iter(batches(dataset, todo, batch_size, num_workers))
    with tqdm(total=len(todo), desc="embedding", unit="img", disable=None if progress else True) as bar:
        while True:
            t0 = time.perf_counter()
            batch = next(loader, None)
            t1 = time.perf_counter()
            times.read += t1 - t0
            if batch is None:
                break
            images, ok, reasons, index = batch
            ok, index = ok.numpy().astype(bool), index.numpy()
            if ok.any():
                out.vectors[index[ok]] = forward(images[torch.from_numpy(ok)]).numpy()
            t2 = time.perf_counter()
            times.net += t2 - t1
            out.ok[index] = ok
            for row, good, reason in zip(index.tolist(), ok, reasons):
                out.reasons[row] = "" if good else reason
            times.batches += 1
            writer.add(index.tolist(), out, times.batches)
            times.write += time.perf_counter() - t2
            bar.update(len(ok))
    t0 = time.perf_counter()
    writer.flush(out)
    times.write += time.perf_counter() - t0
    return times
