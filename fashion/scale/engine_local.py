"""The one-process embedding engine: decode in threads ahead of the network, one shard per chunk.

Decoding (Pillow, torch's resize) releases the GIL, so a small thread pool keeps the network fed
without worker processes. A shard of ``shard_rows`` ids is written atomically when complete: a kill
loses at most the chunk in flight.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import manifest as manifest_mod
from . import rows as stage
from . import shards

log = logging.getLogger(__name__)


def _batches(ids: np.ndarray, size: int):
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def embed(config, spec, embedder, todo: np.ndarray, out, progress: bool = True) -> int:
    """Embed the manifest rows ``todo`` into shards of ``out``; returns the number of failed images."""
    from tqdm.auto import tqdm

    from ..embedding.reader import default_num_workers

    threads = max(1, default_num_workers() if config.num_workers is None else int(config.num_workers))
    failed = 0
    with ThreadPoolExecutor(max_workers=threads) as pool, \
            tqdm(total=len(todo), desc="embedding", unit="img", disable=None if progress else True) as bar:
        for chunk in _batches(todo, config.shard_rows):
            table = manifest_mod.read_items(config.run_dir, columns=["path", "bbox"], ids=chunk)
            paths = table.column("path").to_pylist()
            boxes = table.column("bbox").to_pylist() if spec.crop and "bbox" in table.column_names else None
            ids = table.column("id").to_numpy()
            starts = range(0, len(ids), config.batch_size)
            decoded = pool.map(lambda s: stage.decode_rows(paths[s:s + config.batch_size],
                                                           None if boxes is None else boxes[s:s + config.batch_size],
                                                           spec.size, embedder.resize), starts)
            vecs, oks, reasons = [], [], []
            for pixels, ok, why in decoded:
                vecs.append(stage.embed_pixels(embedder, pixels, ok, why))
                oks.append(ok)
                reasons += why
                bar.update(len(ok))
            ok = np.concatenate(oks)
            failed += int((~ok).sum())
            shards.write_shard(out, stage.result_table(ids, np.concatenate(vecs), ok, reasons))
    return failed
