"""The image files of a run's items, as the service hands them out: :class:`ImageFiles` (the file of an
item, checked to stay inside the dataset root and to hold the kind of image its name says, and
thumbnails kept in memory)."""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .answers import ItemNotFound
from .budget import MemoryBudget, photo_cost

THUMB_SIZE = 256
THUMB_CACHE = 4096  # thumbnails kept in memory (~10 kB each as JPEG)


class ImageFiles:
    """The files of the items of one run, by item id (already checked to be an id of the run).

    paths: the item table's ``path`` column; ok: its ``ok`` column (False: the run skipped the item);
    root: the dataset root no file may leave (besides ``uploads``, the run's content-addressed folder of
    photos added over HTTP, whose files are allowed directly in it); budget / decoding: the service's memory budget and the
    semaphore that bounds the photos decoded at once (a thumbnail shares both with the photo searches).
    """

    def __init__(self, paths: np.ndarray, ok: np.ndarray, root: Path, budget: MemoryBudget,
                 decoding: threading.BoundedSemaphore, uploads: Path | None = None):
        self.paths, self.ok, self.root = paths, ok, Path(root)
        self.uploads = Path(uploads) if uploads is not None else None
        self.budget, self.decoding = budget, decoding
        self._thumbs: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def path(self, i: int) -> Path:
        """Item ``i``'s image file, resolved; only a regular file inside the dataset root or directly in the
        run's uploads (a symlink that leaves them is refused). Raises :class:`ItemNotFound`."""
        if not self.ok[i]:
            raise ItemNotFound(f"item {i} was skipped by the run (unreadable image)")
        try:
            path = Path(self.paths[i]).resolve(strict=True)
        except (OSError, RuntimeError):
            raise ItemNotFound(f"item {i}: image file not found") from None
        inside = path.is_relative_to(self.root) or (self.uploads is not None and path.parent == self.uploads)
        if not inside or not path.is_file():
            raise ItemNotFound(f"item {i}: image file outside the dataset root or not a regular file")
        return path

    def checked(self, i: int) -> tuple[Path, str]:
        """:meth:`path` and its media type, once its header shows an image of the kind its name in the
        item table says (a hard link to a text file named ``.jpg`` is refused). Raises ItemNotFound."""
        import mimetypes

        from ..errors import ImageError
        from ..images import FORMATS_BY_EXTENSION, image_info

        path = self.path(i)
        suffix = Path(self.paths[i]).suffix.lower()
        try:
            found = image_info(path).format
        except ImageError as exc:
            raise ItemNotFound(f"item {i}: not an image ({exc.reason})") from None
        if found not in FORMATS_BY_EXTENSION.get(suffix, ()):
            raise ItemNotFound(f"item {i}: the file holds a {found} image, not the kind its name says "
                               f"({suffix or 'none'})")
        return path, mimetypes.guess_type(f"x{suffix}")[0] or "application/octet-stream"

    def thumbnail(self, i: int, size: int = THUMB_SIZE) -> bytes:
        """A JPEG of item ``i``'s image at most ``size`` px a side (kept in memory, never on disk)."""
        from PIL import Image

        from ..images import image_info, open_image

        key = (i, int(size))
        with self._lock:
            if key in self._thumbs:
                self._thumbs.move_to_end(key)
                return self._thumbs[key]
        try:
            path = self.path(i)
            with self.budget.hold(photo_cost(image_info(path).pixels)), self.decoding:
                picture = open_image(path)
                picture.thumbnail((size, size), Image.Resampling.BILINEAR)
        except OSError as exc:  # ImageError: a file the run skipped or that changed since
            raise ItemNotFound(f"item {i}: image unreadable ({getattr(exc, 'reason', exc)})") from None
        buf = io.BytesIO()
        picture.save(buf, format="JPEG", quality=85)
        data = buf.getvalue()
        with self._lock:
            self._thumbs[key] = data
            while len(self._thumbs) > THUMB_CACHE:
                self._thumbs.popitem(last=False)
        return data
