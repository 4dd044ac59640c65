"""The service's memory budget: how many photos may be in the service at once, and how many bytes of
decoded pixels they may hold together (decoding, waiting for the network, in it).

A photo's cost is known from its header before a byte of pixel data is decoded (:func:`photo_cost`);
a request waits for room at most ``wait_s`` seconds, and only ``queue`` requests may be in the service
at once: past either it gets :class:`Busy` (HTTP 503 with Retry-After), so memory never grows with the
number of requests.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from typing import Iterator

from ..errors import FashionError
from ..options import default

# Peak bytes one pixel holds between decoding and the network, the worst mode measured (peak RSS of
# open_image_bytes + resize_image on a 36 Mpx PNG): RGB 10 (Pillow's 4-byte pixels, then numpy's packed
# copy and its transient bytes), palette with transparency 13, 16-bit grey 12, RGBA 16 (the composite).
BYTES_PER_PIXEL = 16


class Busy(FashionError, RuntimeError):
    """The service has no room for another photo now (HTTP 503); ``retry_after``: seconds to wait."""

    def __init__(self, message: str, retry_after: int = 2):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Limits:
    """The memory budget of photo searches (``fashion serve --max-pixels / --memory-mb / --queue``).

    max_pixels: the largest photo (checked from its header, then on the decoded image);
    memory_mb: decoded bytes of all photos in flight together; queue: photo requests in the service at
    once (reading, decoding, waiting, in the network); wait_s: the longest wait for room.
    """

    max_pixels: int = default("max_pixels")
    memory_mb: int = default("memory_mb")
    queue: int = default("queue")
    wait_s: float = 10.0

    def __post_init__(self):
        for name in ("max_pixels", "memory_mb", "queue"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if photo_cost(self.max_pixels) > self.memory_mb << 20:
            raise ValueError(f"a photo of max_pixels={self.max_pixels:,} needs {photo_cost(self.max_pixels) >> 20} MB "
                             f"decoded, more than memory_mb={self.memory_mb}: raise memory_mb or lower max_pixels")
        if not self.wait_s > 0:
            raise ValueError(f"wait_s must be positive, got {self.wait_s!r}")


def one_caller() -> Limits:
    """Limits for one caller at a time (``fashion search``): Pillow's own pixel limit, a budget it fits."""
    from PIL import Image

    pixels = int(Image.MAX_IMAGE_PIXELS or 1 << 31)
    return Limits(max_pixels=pixels, memory_mb=-(-photo_cost(pixels) >> 20), queue=1)


def return_freed_memory(threshold: int = 4 << 20) -> bool:
    """Have glibc serve every allocation of ``threshold`` bytes or more with its own mmap, so a decoded
    photo's memory goes back to the system when it is freed. By default glibc raises that threshold
    after the first big free, and later photo buffers come from per-thread arenas that keep them: under
    32 concurrent hostile uploads the server grew by 980 MB instead of 370 MB (benchmarks/hostile.py).

    Fixing the mmap threshold also fixes the heap's trim threshold at glibc's 128 KB: every photo's
    smaller buffers (the resize's int32 blocks, the network's batch: 0.5-4 MB) were given back at their
    free and faulted in again for the next photo, 3.3-4.2 ms of system CPU a photo against 0.6-0.7 with
    glibc's defaults (benchmarks/README.md, issue 31). So the heap keeps up to ``4 × threshold`` of free
    memory at its top (0.3-0.4 ms of system CPU a photo), in at most ``ARENAS`` arenas (glibc's default,
    8 a core, let 16 photo threads keep 16 of them: RSS 812 against 741 MB in process at concurrency 16);
    buffers over ``threshold`` are still mapped and returned one by one. Process-wide, so the entry point
    (``fashion serve``) calls it; False where there is no glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, int(threshold))) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, 4 * int(threshold))) and bool(libc.mallopt(_M_ARENA_MAX, ARENAS))
    except (OSError, AttributeError):
        return False


_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
_M_ARENA_MAX = -8
ARENAS = 2  # malloc arenas of the server: photo threads hold the GIL for most of their allocations
_M_MMAP_THRESHOLD = -3  # glibc's malloc.h


def photo_cost(pixels: int) -> int:
    """Bytes a photo of ``pixels`` pixels holds at its peak between decoding and the network."""
    return int(pixels) * BYTES_PER_PIXEL


class MemoryBudget:
    """Admission (at most ``limits.queue`` requests) and bytes of decoded photos (at most ``memory_mb``)."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.capacity = limits.memory_mb << 20
        self._cond = threading.Condition()
        self._used = 0
        self._admitted = 0

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        """One photo request in the service, or :class:`Busy` at once when ``queue`` already are."""
        with self._cond:
            if self._admitted >= self.limits.queue:
                raise Busy(f"busy: {self._admitted} photo searches in progress (the limit); retry shortly")
            self._admitted += 1
        try:
            yield
        finally:
            with self._cond:
                self._admitted -= 1

    @contextlib.contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        """Reserve ``nbytes`` of decoded pixels until the block ends; waits at most ``wait_s``, then Busy."""
        nbytes = min(int(nbytes), self.capacity)  # the caller checked the photo fits the budget alone
        deadline = time.monotonic() + self.limits.wait_s
        with self._cond:
            while self._used + nbytes > self.capacity:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Busy(f"busy: {self._used >> 20} MB of photos are being decoded (the limit is "
                               f"{self.capacity >> 20} MB); retry shortly")
                self._cond.wait(left)
            self._used += nbytes
        try:
            yield
        finally:
            with self._cond:
                self._used -= nbytes
                self._cond.notify_all()

    def state(self) -> dict:
        """Requests admitted and megabytes reserved now (for logs and tests)."""
        with self._cond:
            return {"admitted": self._admitted, "reserved_mb": self._used >> 20}
