"""The live catalogue: change a finished run without a rebuild (issue 28).

- :mod:`.add`: ``fashion add RUN SOURCE…`` embeds only the new photos and appends them;
- :mod:`.remove`: ``fashion remove RUN PATH… | --id N… | --filter EXPR`` takes items out;
- :mod:`.lists`: the neighbour lists updated incrementally (pure functions on arrays);
- :mod:`.state`: a run read into memory, and written back as a new sealed run in one transaction.

Ids are stable: an added photo gets the next id, a removed item keeps its row in the item table as a
tombstone (role ``removed``, ``ok`` False; its vector stays in the shared embedding file), so the
reader's "ids 0..n-1, row = id" rule holds and no id is ever reused. A removed item is in no index, no neighbour list and no metric.
"""
