"""benchmarks/serve_profile.py (``query_profile.py --under-load``): the timed child server, the stage table's
arithmetic, and py-spy's samples (blocked ones left out)."""

import sys
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import serve_profile  # noqa: E402


def test_py_spy_samples_go_to_their_innermost_stage_and_blocked_ones_are_left_out(tmp_path):
    raw = tmp_path / "spy.txt"
    raw.write_text(
        "thread (0x10): MainThread;Runner.run (asyncio/runners.py:118) 7\n"
        "thread (0x11): AnyIO worker thread;WorkerThread.run (anyio/_backends/_asyncio.py:1124);"
        "SimilarityService.search_image (fashion/service/query.py:189);network_input (fashion/service/query.py:384);"
        "resize_bilinear_aa (fashion/resample.py:130) 5\n"
        "thread (0x11): AnyIO worker thread;WorkerThread.run (anyio/_backends/_asyncio.py:1113);"
        "Queue.get (queue.py:171);Condition.wait (threading.py:327) 9\n"
        "thread (0x12): AnyIO worker thread;SimilarityService.search_image (fashion/service/query.py:189);"
        "MicroBatcher.__call__ (fashion/service/batcher.py:62);Event.wait (threading.py:629);"
        "Condition.wait (threading.py:327) 4\n")
    samples, blocked = serve_profile.read_samples(raw)
    assert blocked == 13
    assert dict(samples[0x10]) == {serve_profile.UVLOOP: 7} and dict(samples[0x11]) == {"resize": 5}
    assert 0x12 not in samples
    # each thread's CPU is split by its own samples; a thread with no sample is its own row
    table = dict((row, ms) for row, ms, _ in serve_profile.spy_table(
        samples, {0x10: (0.7, 0, 0.0), 0x11: (1.0, 0, 0.0), 0x99: (0.2, 0, 0.0)}, 0x10, 100))
    assert table == pytest.approx({serve_profile.UVLOOP: 7.0, "resize": 10.0, "threads with no Python sample": 2.0})


def test_the_stage_table_adds_up_to_the_threads_cpu():
    rows = [row for row, *_ in serve_profile.TIMED]
    before = {"totals": {row: [1.0, 1, 1] for row in rows}}
    parts = dict(zip(rows, (0.1, 0.1, 6.5, 0.2, 0.7, 1.5, 3.1, 2.8, 0.6, 0.05, 0.15)))  # seconds since `before`
    after = {"totals": {row: [1.0 + parts[row], 9, 9] for row in rows}, "workers": [2, 3]}
    used = {1: (0.9, 10, 0.1), 2: (3.6, 10, 0.0), 3: (3.3, 10, 0.0), 4: (0.05, 1, 0.0)}  # loop, 2 workers, other
    table = serve_profile.stage_table(before, after, used, 1, 1000)
    got = {row: ms for row, ms, _ in table}
    assert sum(got.values()) == pytest.approx(sum(cpu for cpu, *_ in used.values()))  # ms a photo × 1000 photos / 1000
    assert got["micro-batcher: waiting and waking, less the network"] == pytest.approx(0.3)
    assert got["search_image's rest: memory budget, decode slots, checks"] == pytest.approx(6.5 - 0.2 - 0.7 - 1.5 - 3.1 - 0.6 - 0.05 - 0.15)
    assert got["garment colour (colour modes)"] == pytest.approx(0.15)
    assert got["worker threads outside search_image: anyio's pool (queue, futures, wake-ups)"] == pytest.approx(0.4)
    assert got["threads that ran no photo (OpenVINO's, OpenMP's, the run watcher)"] == pytest.approx(0.05)
    assert [row for row, *_ in serve_profile.stage_table_rows()] == [row for row, *_ in table]


def test_the_timed_child_times_the_photo_paths_real_functions(sample_run, tmp_path):
    """The child is `fashion serve` with its timers: a few photos posted, every timed stage of theirs counted
    (a renamed function of the photo path fails here, not silently in a benchmark)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from serve import BOUNDARY, multipart_body

    photos = sorted((REPO / "fashion" / "data" / "sample" / "img").rglob("*.jpg"))[:3]
    with serve_profile._Child(sample_run, 4, tmp_path) as server:
        server.wait_ready(300)
        for n, photo in enumerate(photos):
            body, ctype = multipart_body(photo, BOUNDARY)
            query = "?colour=same" if n == 0 else ""  # one colour-mode search: the garment colour's row
            request = urllib.request.Request(server.url + "/api/search" + query, data=body,
                                             headers={"Content-Type": ctype})
            with urllib.request.urlopen(request, timeout=60) as response:
                assert response.status == 200
        timers = server.timers()
        cpu = serve_profile.thread_cpu(server.pid)
    totals = timers["totals"]
    for row, *_ in serve_profile.TIMED:
        assert totals[row][0] > 0, row
    assert totals["search_image (all of it)"][1] == 3 and totals["JSON answer"][1] == 3
    assert totals["network (the embedder's infer, one call a batch)"][2] >= 3  # the warm-up's calls count too
    assert set(timers["workers"]) <= set(cpu) and len(timers["workers"]) >= 1
    for row, cpu_ms, wall_ms, share in serve_profile.wall_table({"totals": {}}, timers, 3, 1.0):
        assert 0 < cpu_ms <= wall_ms * 1.01 + 0.01 and share > 0, row  # a thread's CPU never passes its wall time
