"""Nearest-neighbour indexes in scikit-learn's ``NearestNeighbors`` shape.

``build_index(name, metric).fit(X).kneighbors(Q, n_neighbors=k)`` returns ``(distances, indices)``:
float32 and int64 arrays of shape (n_queries, k), sorted by ascending distance (ties by index; which
of several points tied at the k-th distance is returned is up to the backend).
``kneighbors(None, k)`` queries the fitted set itself and leaves each point out by *index*, so exact
duplicates still find each other at distance 0.

Metrics: ``"cosine"`` (1 - cos, vectors are L2-normalised at ``fit``) and ``"euclidean"`` (L2).
Backends (``INDEXES``), one module per family:

- ``exact`` (:mod:`.exact`): tiled float32 matrix products (torch's MKL GEMM) fused with a streaming
  top-k (:mod:`.kernel`), on the data in place; ties at the k-th distance by index.
- ``kdtree`` / ``balltree`` (:mod:`.trees`): scikit-learn trees (what the original study used).
- ``faiss-flat`` (exact), ``faiss-hnsw`` / ``faiss-ivf`` (approximate) (:mod:`.faiss`).
- ``faiss-ivfpq`` (approximate, compressed codes re-ranked exactly; :mod:`.ivfpq`).
- ``auto``: :func:`auto_index_name`.

Whatever the backend, the distances of the returned neighbours are recomputed from the two float32
rows by one function (:mod:`.distances`: within 3.9e-6 of the float64 distance, relative), so all
backends report bitwise the same distance for the same pair, whatever the query batch. Indexes are saved with
:meth:`NeighborIndex.save` as ``.npz`` (arrays + JSON parameters, no pickle) and loaded with
:func:`load_index`. Importing this package needs numpy only (sklearn and faiss load on use).
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from ..errors import ConfigError, FormatError
from .base import FORMAT_VERSION, METRICS, NeighborIndex, as_matrix, check_metric
from .exact import ExactIndex
from .faiss import FaissFlatIndex, FaissHNSWIndex, FaissIVFIndex
from .ivfpq import FaissIVFPQIndex
from .trees import BallTreeIndex, KDTreeIndex

INDEXES = ("auto", "exact", "kdtree", "balltree", "faiss-flat", "faiss-hnsw", "faiss-ivf", "faiss-ivfpq")
EXACT_INDEXES = ("exact", "kdtree", "balltree", "faiss-flat")
APPROXIMATE_INDEXES = ("faiss-hnsw", "faiss-ivf", "faiss-ivfpq")

_BACKENDS = {
    cls.name: cls
    for cls in (ExactIndex, KDTreeIndex, BallTreeIndex, FaissFlatIndex, FaissHNSWIndex, FaissIVFIndex,
                FaissIVFPQIndex)
}


AUTO_EXACT_MAX = 100_000  # fitted vectors: above, "auto" is IVF-PQ (exact all-pairs grows as n²)


def auto_index_name(n: int | None = None) -> str:
    """The backend ``"auto"`` means for ``n`` fitted vectors: ``exact`` (tiled GEMM + streaming top-k on
    the data in place) up to :data:`AUTO_EXACT_MAX` or when ``n`` is not known, ``faiss-ivfpq`` (compressed
    codes, exact re-rank of the candidates) above it, where exact all-pairs costs n² products (100k × 512:
    ~1 minute at the GEMM floor on two cores; 1M: ~100 times that). Runs too large to hold their vectors
    in memory get the on-disk IVF-PQ (``fashion.pipeline.index.choose_index``: by size and memory). Why,
    with the measurements: ``benchmarks/README.md``. ``FASHION_AUTO_INDEX`` overrides the choice.

    >>> auto_index_name(), auto_index_name(5_000), auto_index_name(2_000_000)
    ('exact', 'exact', 'faiss-ivfpq')
    """
    override = os.environ.get("FASHION_AUTO_INDEX")
    if override:
        if override not in _BACKENDS:
            raise ConfigError(f"FASHION_AUTO_INDEX={override!r} is not an index; valid: {', '.join(_BACKENDS)}")
        return override
    return "faiss-ivfpq" if n is not None and n > AUTO_EXACT_MAX else "exact"


def build_index(name: str = "auto", metric: str = "cosine", **params) -> NeighborIndex:
    """A new, unfitted index ``name`` (one of ``INDEXES``) for ``metric`` ("cosine" or "euclidean").

    >>> X = np.array([[0., 0.], [1., 0.], [0., 2.], [3., 3.]])
    >>> d, i = build_index("exact", metric="euclidean").fit(X).kneighbors(n_neighbors=1)
    >>> i.ravel().tolist(), [round(float(v), 3) for v in d.ravel()]
    ([1, 0, 0, 2], [1.0, 1.0, 2.0, 3.162])
    """
    if name not in INDEXES:
        raise ConfigError(f"unknown index {name!r}; valid indexes: {', '.join(INDEXES)}")
    check_metric(metric)
    if name == "auto":
        name = auto_index_name()
    return _BACKENDS[name](metric=metric, **params)


def load_index(path) -> NeighborIndex:
    """Load an index written by :meth:`NeighborIndex.save` (no pickle involved).

    FileNotFoundError when there is no file; any other failure to read it (a pickle, an object array,
    not an .npz, missing or malformed arrays, another format version) is one ValueError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no index file at {path}")
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"PK\x03\x04":  # .npz is a zip; a pickle or .npy is refused unread
                raise ValueError("not an .npz archive (pickled data is never loaded)")
        from ..runfiles import check_npz, npz_arrays

        check_npz(path)  # array headers against the file's size: nothing huge is allocated for a lie
        arrays = npz_arrays(path)  # large members mapped, not read; an object (pickled) array raises
        meta = json.loads(str(arrays["__meta__"]))
        if not isinstance(meta, dict):
            raise ValueError("__meta__ is not a JSON object")
        version, name = meta.get("format_version"), meta.get("name")
        if version != FORMAT_VERSION or name not in _BACKENDS:
            raise ValueError(f"unsupported index format {version!r} / {name!r}")
        params = dict(meta["params"])
        if name == "exact":  # files of the torch-engine era carry two knobs that no longer exist
            params.pop("block_size", None), params.pop("engine", None)
        index = _BACKENDS[name](metric=meta["metric"], **params).restore(as_matrix(arrays["data"], "data"), arrays)
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError, RuntimeError,
            zipfile.BadZipFile) as exc:
        reason = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        reason = (str(reason).strip().splitlines() or [type(exc).__name__])[0]
        raise FormatError(f"not a saved fashion index (an .npz written by fashion.neighbors): {reason}",
                          path) from None
    return index

__all__ = ["INDEXES", "EXACT_INDEXES", "APPROXIMATE_INDEXES", "METRICS", "NeighborIndex", "ExactIndex",
           "KDTreeIndex", "BallTreeIndex", "FaissFlatIndex", "FaissHNSWIndex", "FaissIVFIndex", "FaissIVFPQIndex",
           "AUTO_EXACT_MAX", "auto_index_name", "build_index", "load_index"]
