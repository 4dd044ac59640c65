"""Micro-batching: concurrent callers' items run through one function call together.

The network's cost per image falls with the batch (its small layers do not fill two cores for one
image), and one call at a time is what the cores can run anyway. :class:`MicroBatcher` lets each caller
hand in one item and wait for its own result while the first waiting caller runs everybody's items in
one batch: nothing waits for a timer when the function is idle (a lone query runs at once), and the
queries that arrive during a call form the next batch.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Generic, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Slot:
    __slots__ = ("item", "result", "error", "done", "event")

    def __init__(self, item):
        self.item, self.result, self.error, self.done = item, None, None, False
        self.event = threading.Event()  # set when the result is in, or when this caller is to run the next batch


class MicroBatcher(Generic[T, R]):
    """``batcher(item)`` returns ``fn([... item ...])``'s result for ``item``; thread-safe.

    fn: a list of items → a sequence of as many results, in order; it runs in the caller threads, one call
    at a time. max_batch: the most items of one call. max_wait_s: how long a caller that finds the
    function idle waits for more items before the call (0: never; the batches then form from the items
    that arrive while a call runs). An exception of ``fn`` is raised in every caller of that batch.

    Each waiting caller is woken once: by its result, or to run the next batch (the oldest waiting item's
    caller leads it, so its own item is always in it); nobody else wakes when a call ends (with one
    condition for all, every waiting thread woke at the end of every call, to sleep again).
    """

    def __init__(self, fn: Callable[[list[T]], Sequence[R]], max_batch: int = 8, max_wait_s: float = 0.0):
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be a positive integer, got {max_batch!r}")
        if not max_wait_s >= 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s!r}")
        self.fn, self.max_batch, self.max_wait_s = fn, max_batch, float(max_wait_s)
        self._cond = threading.Condition()  # guards the queue; a leader gathering items (max_wait_s) waits on it
        self._pending: list[_Slot] = []
        self._busy = False  # a caller is running (or gathering) a batch
        self.calls = 0  # calls of fn so far, and the items they ran (for logs and tests)
        self.items = 0

    def __call__(self, item: T) -> R:
        slot = _Slot(item)
        with self._cond:
            self._pending.append(slot)
            lead = not self._busy
            self._busy = True
            if not lead and self.max_wait_s:
                self._cond.notify()  # a leader waiting for more items counts this one
        if not lead:
            slot.event.wait()
        if not slot.done:  # this caller runs the next batch: its own item is the oldest waiting one
            self._lead()
        if slot.error is not None:
            raise slot.error
        return slot.result

    def _lead(self) -> None:
        """Run one batch of the oldest waiting items, then hand the next batch to the oldest caller left."""
        with self._cond:
            if self.max_wait_s:
                deadline = time.monotonic() + self.max_wait_s
                while len(self._pending) < self.max_batch and (left := deadline - time.monotonic()) > 0:
                    self._cond.wait(left)
            batch = self._pending[:self.max_batch]
            del self._pending[:self.max_batch]
        try:
            self._run(batch)
        finally:
            with self._cond:
                following = self._pending[0] if self._pending else None
                self._busy = following is not None
            for s in batch:
                s.event.set()
            if following is not None:
                following.event.set()  # not done: it leads the next batch

    def _run(self, batch: list[_Slot]) -> None:
        """Call fn on the batch (outside the lock) and mark each slot done with its result or the error."""
        try:
            results = self.fn([s.item for s in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"the batch function returned {len(results)} results for {len(batch)} items")
        except BaseException as exc:  # noqa: BLE001 - handed to every caller of the batch
            for s in batch:
                s.error, s.done = exc, True
        else:
            for s, r in zip(batch, results):
                s.result, s.done = r, True
        self.calls += 1
        self.items += len(batch)
