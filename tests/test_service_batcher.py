"""fashion.service.batcher: concurrent callers share calls of the batch function and get their own results."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from fashion.service.batcher import MicroBatcher


def test_a_lone_caller_runs_at_once_with_a_batch_of_one():
    seen = []
    batcher = MicroBatcher(lambda items: seen.append(list(items)) or [x * 2 for x in items], max_batch=4)
    assert [batcher(i) for i in range(3)] == [0, 2, 4]
    assert seen == [[0], [1], [2]] and (batcher.calls, batcher.items) == (3, 3)


def test_concurrent_callers_share_calls_and_each_gets_its_own_result():
    sizes, lock = [], threading.Lock()

    def slow_square(items):  # slow enough that the others arrive while one call runs
        with lock:
            sizes.append(len(items))
        time.sleep(0.05)
        return [x * x for x in items]

    batcher = MicroBatcher(slow_square, max_batch=4)
    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(batcher, range(40)))
    assert results == [x * x for x in range(40)]
    assert sum(sizes) == 40 and max(sizes) <= 4 and len(sizes) < 40 and max(sizes) > 1
    assert (batcher.calls, batcher.items) == (len(sizes), 40)


def test_max_wait_gathers_a_batch_before_the_call():
    sizes = []
    batcher = MicroBatcher(lambda items: sizes.append(len(items)) or list(items), max_batch=3, max_wait_s=5.0)
    with ThreadPoolExecutor(3) as pool:
        start = time.perf_counter()
        assert sorted(pool.map(batcher, range(3))) == [0, 1, 2]
    assert sizes == [3] and time.perf_counter() - start < 4  # full batch: no wait for the timer


def test_an_error_reaches_every_caller_of_its_batch_and_the_next_batch_runs():
    gate = threading.Event()

    def fn(items):
        gate.wait(5)
        if "bad" in items:
            raise ValueError("bad item in the batch")
        return [f"ok {x}" for x in items]

    batcher = MicroBatcher(fn, max_batch=8)
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(batcher, "first")  # runs alone, holding the gate: the next two form one batch
        time.sleep(0.1)
        others = [pool.submit(batcher, x) for x in ("bad", "good")]
        time.sleep(0.1)
        gate.set()
        assert first.result() == "ok first"
        for future in others:
            with pytest.raises(ValueError, match="bad item"):
                future.result()
    assert batcher("after") == "ok after"


def test_a_result_count_that_does_not_match_is_an_error_and_bad_settings_are_refused():
    with pytest.raises(RuntimeError, match="2 results for 1 items"):
        MicroBatcher(lambda items: [1, 2])(0)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="max_batch"):
            MicroBatcher(list, max_batch=bad)
    with pytest.raises(ValueError, match="max_wait_s"):
        MicroBatcher(list, max_wait_s=-1)


def test_batches_form_in_arrival_order_and_each_waiting_caller_wakes_once():
    # the caller of the oldest waiting item runs the next batch; the others sleep until their result is in
    gate, batches = threading.Event(), []

    def fn(items):
        if items == ["first"]:
            gate.wait(5)
        batches.append(list(items))
        return [(x, threading.get_ident()) for x in items]

    batcher = MicroBatcher(fn, max_batch=3)
    wakes, main = [], threading.get_ident()
    original = threading.Event.wait

    def counted(self, timeout=None):
        if threading.get_ident() != main:  # not Thread.start's own wait for a new pool thread
            wakes.append(threading.get_ident())
        return original(self, timeout)

    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(batcher, "first")
        time.sleep(0.1)
        threading.Event.wait = counted  # only the queued callers' waits are counted
        try:
            futures = []
            for x in range(7):  # queued in this order while the first call holds the gate
                futures.append(pool.submit(batcher, x))
                time.sleep(0.02)
            gate.set()
            results = [f.result(5) for f in futures]
        finally:
            threading.Event.wait = original
        assert first.result(5)[0] == "first"
    assert batches == [["first"], [0, 1, 2], [3, 4, 5], [6]]
    assert [r for r, _ in results] == list(range(7))
    leaders = {r[1] for r in results[0:3]}, {r[1] for r in results[3:6]}
    assert all(len(x) == 1 for x in leaders)  # one thread ran each batch: its oldest item's caller
    assert len(wakes) == 7  # each queued caller waited once (its result, or its turn to lead)
