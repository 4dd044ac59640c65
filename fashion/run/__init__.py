"""A run directory's format (:mod:`.layout`), its one writer (:mod:`.writer`) and its one reader
(:mod:`.reader`: :func:`open_run`; the saved index behind one interface in :mod:`.index`)."""
