"""Sharded, id-keyed stages for catalogues of millions: manifest → embed → index → knn.

Every stage reads and writes parquet shards keyed on a dense int64 ``id`` (the manifest's row number),
never on row order, so a stage killed at any point resumes by anti-joining the ids already written.
The same stages run in one process (``engine="local"``, the default, no Ray needed) or as Ray Data
tasks and actors (``engine="ray"``, the ``[scale]`` extra); Ray is imported only in
:mod:`fashion.scale.engine_ray`.

Run directory::

    RUN/manifest.json                 count, fingerprint of the dataset, shard list (written last)
    RUN/manifest/part-*.parquet       id, path, relpath, label, split, [item_id], [bbox]
    RUN/embeddings/<tag>/part-*.parquet   id, vector (fixed-size list<float32>), ok, reason
    RUN/index/                        index.json, index.faiss + index.ivfdata, vectors.f16.npy
    RUN/neighbors/part-*.parquet      query_id, rank, neighbor_id, distance  (+ metrics.json)
"""
