"""Rows of a 2-D ``.npy`` file read by id with ``pread``: a run's embeddings and the IVF-PQ index's
re-rank vectors, served without mapping the file into the process (:class:`RowReader`)."""

from __future__ import annotations

import os


class RowReader:
    """Rows of a 2-D .npy file read with ``os.preadv`` into a new array, not through a memory map.

    Why: on this kernel (6.18, large folios in the page cache) a fault on a mapped file maps the whole
    cached folio, ~1.2 MB for one 2 KB row (measured: 200 rows of a mapped 2 GB embeddings.npy put
    236 MB into the process' RSS; ``MADV_RANDOM`` and ``MADV_NOHUGEPAGE`` changed nothing), so a server
    answering random rows through a map grows towards the file's size. pread copies only the rows
    asked for (page cache outside the process); thread-safe (no shared file position)."""

    def __init__(self, path: os.PathLike | str):
        import weakref

        import numpy as np

        array = np.load(path, mmap_mode="r", allow_pickle=False)
        if array.ndim != 2 or not array.flags.c_contiguous:
            raise ValueError(f"{path}: expected a C-ordered 2-D array, got {array.shape}")
        self.shape, self.dtype, self.offset = array.shape, array.dtype, int(array.offset)
        self.row_bytes = int(array.shape[1] * array.dtype.itemsize)
        self.fd = os.open(path, os.O_RDONLY)
        weakref.finalize(self, os.close, self.fd)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        """``reader[ids]`` or ``reader[a:b]``: :meth:`read` of those rows (so :class:`fashion.run.segments.Segments`
        reads rows by id through readers as through arrays)."""
        if isinstance(key, slice):
            import numpy as np

            key = np.arange(*key.indices(self.shape[0]))
        return self.read(key)

    def read(self, ids):
        """(len(ids), d) array of the rows ``ids`` (in that order; repeats allowed)."""
        import numpy as np

        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        out = np.empty((len(ids), self.shape[1]), dtype=self.dtype)
        if not len(ids):
            return out
        if ids.min() < 0 or ids.max() >= self.shape[0]:
            raise IndexError(f"row ids out of range 0..{self.shape[0] - 1}")
        view = memoryview(out).cast("B")
        for j, i in enumerate(ids.tolist()):
            got = os.preadv(self.fd, [view[j * self.row_bytes:(j + 1) * self.row_bytes]],
                            self.offset + i * self.row_bytes)
            if got != self.row_bytes:
                raise OSError(f"short read of row {i} ({got} of {self.row_bytes} bytes): the file changed")
        return out
