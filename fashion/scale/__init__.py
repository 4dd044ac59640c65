"""Sharded, id-keyed stages for catalogues of millions: manifest → embed → index → knn.

Every stage reads and writes parquet shards keyed on a dense int64 ``id`` (the manifest's row number),
never on row order, so a stage killed at any point resumes by anti-joining the ids already written.
The same stages run in one process (``engine="local"``, the default, no Ray needed) or on a pool of Ray
actors (``engine="ray"``, the ``[scale]`` extra): an executor (:mod:`fashion.scale.executors`, which
knows no stage) runs the tasks a stage hands it; Ray is imported only there. The one pipeline
(:mod:`fashion.pipeline`) composes these stages for ``measure_sim.py`` at every size.

Run directory::

    RUN/manifest.json                 count, fingerprint of the dataset, shard list (written last)
    RUN/manifest/part-*.parquet       id, path, relpath, label, split, [item_id], [bbox]
    RUN/embeddings/<tag>/part-*.parquet   id, vector (fixed-size list<float32>), ok, reason
    RUN/index/                        index.json, index.faiss + index.ivfdata, vectors.f16.npy
    RUN/neighbors/part-*.parquet      query_id, rank, neighbor_id, distance  (+ metrics.json)
"""
