#!/usr/bin/env python
"""Offline prototype (issue 32, job colournet): do ImageNet features of the garment, pooled over the garment
mask, help the fitted colour-family decision?

Not part of the library. The sixth round (``scripts/colour_embedding_prototype.py``) fed the *category-trained*
network's whole-photo vector to the logistic regression and lost narrowly. Here the network is the
**ImageNet-initialised** EfficientNet-Lite0 of the registry (``fashion.backbones.create_backbone``, the package
weights, never trained on categories nor with colour augmentation), and its feature maps are read at three
depths (:data:`LAYERS`): ``s28`` (the output of block stage 2, 40 channels at 28 x 28), ``s14`` (stage 4, 112
channels at 14 x 14: colour and texture, stripes and prints, survive there) and ``s7`` (the body's last map,
1,280 channels at 7 x 7, for comparison). The photo is squish-resized to 224 px (as the run's embedding pass of
a trained model reads it), so each map's grid spans the whole frame, as the colour code's mask does.

Each map is pooled (:data:`POOLS`) over the garment: the mask :func:`fashion.colour.dominant.read_garment`
computes (the border-cue mask of :mod:`fashion.colour.garment`, or its centre fallback) is area-resized to the
map's grid, giving each cell the share of it that is garment; ``mask-mean`` is the mean of the cells weighted by
that share, ``mask-max`` the channel-wise maximum over the cells at least half garment (the most garment-like
cells where none is). ``whole-mean`` is the plain average of the whole map, for comparison.

For every ``fit`` and ``dev`` photo of ``tests/data/colour_labels.csv`` (never a ``holdout`` one) the pooled
vectors and the 57 garment features (from the same reading) are computed once and cached (``--cache``, an .npz).
Then the same cross-validation as ``scripts/fit_colour_model.py`` (stratified 5-fold x 3 seeds, the same 12 (C,
second weight) settings, the same folds), through the sixth round's code (its ``grid``: the vector standardised
and its first 32 / 64 principal components fitted on each fold's training photos only, beside the 57 features),
for each of :data:`VARIANTS`. ``--paired`` prints the sixth round's per-seed diagnostic against the 57 alone.

The decision rule (written before the CV ran, in the commit message of this script): keep the lever only if the
best (variant, C, second weight) reaches CV top-1 >= 0.651 on fit + dev and, at that same setting, top-2 >=
0.8217 (the 57 features' 0.6307 / 0.8217, ``benchmarks/README.md``, fourth round). It lost: the best,
``s7-whole-mean-pca64`` (the last map, plain average) at C 0.03, second weight 0.3, reached 0.6458 / 0.8367; the
best mask-pooled one, ``s7-mask-mean-pca64``, 0.6429 / 0.8338, and ``s14-mask-meanmax-pca64`` 0.6419 / 0.8353. The
figures and the ``--paired`` diagnostic are in ``benchmarks/README.md``, "Round of 2026-12-07 (eighth)"; nothing
of it is in the library.

    PYTHONPATH=. OPENBLAS_NUM_THREADS=1 nice -n 19 python scripts/colour_masked_prototype.py \\
        --cache /tmp/colournet/pooled.npz
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fashion.colour.dominant import read_garment  # noqa: E402
from fashion.colour.garment import SIZE  # noqa: E402
from fashion.colour.model import FIT_SPLITS  # noqa: E402
from fashion.images import open_image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the maintainer script and the sixth round's prototype
from colour_embedding_prototype import compare, labelled_vectors, parse, prototype_parser  # noqa: E402

INPUT = 224
LAYERS = {"s28": 2, "s14": 4, "s7": None}  # name -> index of the block stage whose output it is (None: the body's)
POOLS = ("mask-mean", "mask-max", "whole-mean")
HALF = 0.5  # a cell at least this much garment counts for mask-max
# name -> (the cached pooled vectors it concatenates, principal components kept); cheapest first
VARIANTS = {
    "s28-mask-meanmax-pca32": (("s28-mask-mean", "s28-mask-max"), 32),
    "s14-whole-mean-pca32": (("s14-whole-mean",), 32),
    "s14-mask-meanmax-pca32": (("s14-mask-mean", "s14-mask-max"), 32),
    "s14-mask-meanmax-pca64": (("s14-mask-mean", "s14-mask-max"), 64),
    "s28s14-mask-meanmax-pca64": (("s28-mask-mean", "s28-mask-max", "s14-mask-mean", "s14-mask-max"), 64),
    "s7-mask-mean-pca32": (("s7-mask-mean",), 32),
    "s7-mask-mean-pca64": (("s7-mask-mean",), 64),
    "s7-whole-mean-pca64": (("s7-whole-mean",), 64),
}


def cell_shares(mask: np.ndarray, n: int) -> np.ndarray:
    """(n, n) the share of each cell of an n x n grid over the whole frame that ``mask`` (h x w bool) covers."""
    from PIL import Image

    return np.asarray(Image.fromarray(mask.astype(np.float32), mode="F").resize((n, n), Image.Resampling.BOX))


def pooled(fmap: np.ndarray, share: np.ndarray) -> dict[str, np.ndarray]:
    """The :data:`POOLS` of one (C, n, n) map given the garment share of each of its cells (n, n)."""
    cells = fmap.reshape(fmap.shape[0], -1)
    w = share.ravel().astype(np.float64)
    mean = cells @ w / w.sum() if w.sum() > 1e-9 else cells.mean(axis=1)
    chosen = w >= min(HALF, w.max())
    return {"mask-mean": mean, "mask-max": cells[:, chosen].max(axis=1), "whole-mean": cells.mean(axis=1)}


def compute(paths: list[str], batch: int = 8) -> dict[str, np.ndarray]:
    """The 57 garment features (``base``) and every layer's pools of each photo (float32)."""
    import torch

    from fashion.backbones import create_backbone
    from fashion.modelio import preprocess

    torch.set_num_threads(1)
    body, cfg = create_backbone("efficientnet_lite0")
    body.eval()
    print(f"backbone {cfg.name} ({cfg.source}), {INPUT} px squish", flush=True)
    seen = {}
    for name, index in LAYERS.items():
        if index is not None:
            body.blocks[index].register_forward_hook(lambda _m, _i, out, name=name: seen.__setitem__(name, out))
    out = {"base": []} | {f"{layer}-{pool}": [] for layer in LAYERS for pool in POOLS}
    start = time.perf_counter()
    for first in range(0, len(paths), batch):
        chunk = paths[first:first + batch]
        readings = [read_garment(open_image(p, min_size=SIZE)) for p in chunk]  # as fit_colour_model reads them
        x = preprocess([open_image(p) for p in chunk], INPUT, cfg.mean, cfg.std)  # as a run embeds them
        with torch.inference_mode():
            seen["s7"] = body(x)
        for i, reading in enumerate(readings):
            out["base"].append(reading.features)
            for layer in LAYERS:
                fmap = seen[layer][i].numpy().astype(np.float64)
                for pool, vector in pooled(fmap, cell_shares(reading.found.mask, fmap.shape[-1])).items():
                    out[f"{layer}-{pool}"].append(vector.astype(np.float32))
        if first // batch % 10 == 0:
            print(f"  {first + len(chunk)} / {len(paths)}: {time.perf_counter() - start:.0f} s", flush=True)
    return {key: np.array(values) for key, values in out.items()}


def main(argv=None) -> int:
    args = prototype_parser(__doc__.splitlines()[0], "pooled vectors", VARIANTS, "extract").parse_args(argv)
    start = time.perf_counter()
    rows, _, _, data = labelled_vectors(args, compute, "pooled vectors")
    if args.extract_only:
        return 0
    base = data["base"]
    print(f"{len(rows)} photos ({', '.join(f'{s} {sum(r.split == s for r in rows)}' for s in FIT_SPLITS)}), "
          f"{base.shape[1]} garment features", flush=True)
    vectors = {}  # the sixth round's naming: "<vector>-pca<k>" reads the vector "<vector>"
    for variant in args.variants:
        keys, k = VARIANTS[variant]
        vectors[parse(variant)[0]] = np.hstack([data[key] for key in keys])
        assert parse(variant)[1] == k
    compare(base, vectors, args.variants, rows, args.paired, width=26)
    print(f"{time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
