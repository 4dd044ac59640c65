"""Dataset insight from a run's embeddings and neighbours: near-duplicates and split leaks
(:mod:`.duplicates`, :mod:`.verify`, :mod:`.phash`), label suspects (:mod:`.suspects`), the embedding map
(:mod:`.map`), leak-aware accuracy (:mod:`.leaks`) and the stage that writes them into a run
(:mod:`.stage`, :mod:`.page`). Nothing heavy is imported here."""
