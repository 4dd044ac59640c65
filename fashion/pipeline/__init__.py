"""One retrieval pipeline for every size: the stages written once, composed by one orchestrator.

Stages (:data:`fashion.pipeline.measure.STAGES`): manifest (the item table, id = row) → embed (id-keyed
parquet shards, resumable by id) → index (in memory or on disk, picked by size and memory; a finished one
kept) → search (the neighbour parts; finished ones kept) → seal: metrics (one streaming tally), item-table
stages (:data:`fashion.pipeline.items.ITEM_TABLE_STAGES`), report, insight, run.json, manifest. The
orchestrator (:func:`fashion.pipeline.measure.measure`) runs all of them or a range: the sharded verbs.
"""
