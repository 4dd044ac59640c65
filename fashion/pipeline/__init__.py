"""One retrieval pipeline for every size: the stages written once, composed by one orchestrator.

Stages: read (the item table, id = row) → embed (id-keyed parquet shards, resumable by id) → index
(in memory or on disk, picked by size and memory) → search (the neighbour table) → metrics (one streaming
tally) → item-table stages (:data:`fashion.pipeline.items.ITEM_TABLE_STAGES`) → report, insight, seal.
"""
