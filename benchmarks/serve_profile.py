"""Where `fashion serve`'s CPU a photo goes under load: ``query_profile.py --under-load C`` (its docstring).

The server is `fashion serve` itself, started by this file as a child (``--child``) that first wraps the
photo path's functions with per-thread CPU timers (``time.thread_time``: CPU, not wall time, of the thread
that runs them; the library is not changed and pays nothing when it is not profiled). `wrk` loads it
(``serve.load_wrk``: C keep-alive connections posting the photos' multipart bodies, closed loop); after a
warm-up, one window is measured: the timers' totals (the child writes them on SIGUSR1), the CPU of every
thread of the server (``/proc/PID/task/TID/stat``, user + system), their context switches, and the whole
machine's busy and idle time (``/proc/stat``). Rows:

- timed stages: their own CPU (a stage's thread CPU between its call and its return, so a stage includes
  what it waits for on the CPU: the GIL hand-off when it gets it back, page faults, its syscalls);
- derived rows: a whole minus its timed parts (the micro-batcher's call less the network: its waiting and
  waking; ``search_image`` less its stages; a worker thread's CPU outside ``search_image``: anyio's thread
  pool; the event loop thread less multipart parsing and JSON: HTTP, the body's read, routing, the pool's
  hand-offs and uvloop's sockets);
- threads that never ran a photo (OpenVINO's or OpenMP's, the live-run watcher) as one row.

``--py-spy`` adds a second window with py-spy sampling the server's Python threads (``--rate`` Hz,
non-blocking, ``--threads``): each thread's CPU from /proc split over the stages of ``STAGES`` in proportion
to its samples, the samples of a thread blocked in a wait (a lock's or condition's acquire, the thread pool's
queue) left out: on loaded cores a thread just woken is runnable, not running, and py-spy counts it active.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------------------------- the child

# (row, module, attribute[, class]): each call's thread CPU is added to its row; rows of the event loop
# thread first, then the worker threads'. "network" also counts the photos of each call (its batch).
TIMED = [
    ("multipart parse (python-multipart)", "fashion.server.app", "parse_form", None),
    ("JSON answer", "fashion.server.app", "search_json", None),
    ("search_image (all of it)", "fashion.service.query", "search_image", "SimilarityService"),
    ("header gate (image_info)", "fashion.images", "image_info", None),
    ("decode (strict, reduced scale: libjpeg)", "fashion.images", "open_image_bytes", None),
    ("resize to the network input", "fashion.service.query", "network_input", None),
    ("micro-batcher call (all of it)", "fashion.service.batcher", "__call__", "MicroBatcher"),
    ("network (the embedder's infer, one call a batch)", "fashion.service.query", "_infer", None),
    ("index search", "fashion.service.query", "_search", "SimilarityService"),
    ("classifier input (an ensemble's own resize)", "fashion.service.query", "_classifier_input", "SimilarityService"),
    ("garment colour (colour modes)", "fashion.service.colourmode", "of_picture", "ColourModes"),
]
_TOTALS: dict[str, list[float]] = {}  # row -> [cpu s, calls, items, wall s]
_WORKERS: set[int] = set()  # native ids of the threads that ran search_image
_LOCK = threading.Lock()


def _timed(row: str, fn, batch_arg: int | None):
    import functools

    clock, wall = time.thread_time, time.perf_counter
    totals = _TOTALS.setdefault(row, [0.0, 0, 0, 0.0])

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t0, w0 = clock(), wall()
        try:
            return fn(*args, **kwargs)
        finally:
            dt, dw = clock() - t0, wall() - w0
            with _LOCK:
                totals[0] += dt
                totals[3] += dw
                totals[1] += 1
                totals[2] += len(args[batch_arg]) if batch_arg is not None else 1
                if row.startswith("search_image"):
                    _WORKERS.add(threading.get_native_id())

    return wrapper


def install_timers(out: Path) -> None:
    """Wrap the functions of ``TIMED`` (module attributes: looked up at each call) and write their totals
    to ``out`` at every SIGUSR1 (the main thread runs the handler: the event loop's)."""
    import importlib
    import inspect

    for row, module, attr, cls in TIMED:
        owner = importlib.import_module(module)
        if cls is not None:
            owner = getattr(owner, cls)
        timed = _timed(row, getattr(owner, attr), 2 if attr == "_infer" else None)
        if isinstance(inspect.getattr_static(owner, attr), staticmethod):  # stays one (ColourModes.of_picture)
            timed = staticmethod(timed)
        setattr(owner, attr, timed)

    def dump(signum, frame):
        with _LOCK:
            snapshot = {"totals": {k: list(v) for k, v in _TOTALS.items()}, "workers": sorted(_WORKERS)}
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(snapshot))
        tmp.replace(out)

    signal.signal(signal.SIGUSR1, dump)


def child(argv: list[str]) -> int:
    """``serve_profile.py --child OUT TREE fashion-serve-args...``: `fashion serve` of the checkout TREE with
    the timers installed."""
    sys.path.insert(0, argv[1])
    install_timers(Path(argv[0]))
    from fashion.cli import main

    return main(["-q", "serve", *argv[2:]])


# --------------------------------------------------------------------------------------------- the parent

def thread_cpu(pid: int) -> dict[int, tuple[float, int, float]]:
    """(CPU seconds: user + system, context switches: voluntary + not, system seconds) of every thread of
    ``pid``."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            status = (task / "status").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        switches = sum(int(x) for x in re.findall(r"ctxt_switches:\s+(\d+)", status))
        out[int(task.name)] = ((int(fields[11]) + int(fields[12])) / tick, switches, int(fields[12]) / tick)
    return out


def settle(pid: int, timeout: float = 60.0) -> None:
    """Wait until the server is idle (under 10 ms of CPU in 0.3 s): the requests a finished wrk left in
    flight are answered before the next window (else they hold admission slots: 503s, and CPU no photo of
    the window counts)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = sum(cpu[0] for cpu in thread_cpu(pid).values())
        time.sleep(0.3)
        if sum(cpu[0] for cpu in thread_cpu(pid).values()) - before < 0.01:
            return


def machine_cpu() -> tuple[float, float]:
    """(busy, idle) CPU seconds of the whole machine so far, from /proc/stat."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / tick, idle / tick


class _Child:
    """The profiled `fashion serve` child on a free port of 127.0.0.1, stopped on exit."""

    def __init__(self, run, queue: int, work: Path, tree: Path = REPO):
        from fashion.server.launch import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.totals_file = work / "timers.json"
        self.log = open(work / "serve.log", "wb")
        self.process = subprocess.Popen(
            [sys.executable, os.fspath(Path(__file__)), "--child", os.fspath(self.totals_file),
             os.fspath(tree), os.path.abspath(run), "--host", "127.0.0.1", "--port", str(self.port), "--queue", str(queue)],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=os.fspath(tree))
        self.pid = self.process.pid

    def wait_ready(self, timeout: float) -> float:
        import urllib.error
        import urllib.request

        start = time.perf_counter()
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"the profiled `fashion serve` exited with {self.process.returncode}: "
                                 f"{Path(self.log.name).read_bytes().decode(errors='replace')[-2000:]}")
            if time.perf_counter() - start > timeout:
                raise SystemExit(f"the profiled `fashion serve` did not answer within {timeout:.0f} s")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2):
                    return time.perf_counter() - start
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)

    def timers(self) -> dict:
        """The child's timer totals now (it writes them at SIGUSR1)."""
        self.totals_file.unlink(missing_ok=True)
        os.kill(self.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 30
        while not self.totals_file.exists():
            if time.monotonic() > deadline:
                raise SystemExit("the profiled `fashion serve` did not write its timers within 30 s")
            time.sleep(0.01)
        return json.loads(self.totals_file.read_text())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def stage_table(before: dict, after: dict, used: dict[int, tuple[float, int, float]], pid: int, done: int) -> list:
    """[(row, CPU ms a photo, where)] of one window: the timed rows, the derived ones, the other threads."""
    def ms(row):
        return (after["totals"][row][0] - before["totals"].get(row, [0.0])[0]) * 1000 / done

    workers = set(after["workers"])
    worker_ms = sum(used[t][0] for t in used if t in workers) * 1000 / done
    loop_ms = used.get(pid, (0.0, 0, 0.0))[0] * 1000 / done
    other_ms = sum(used[t][0] for t in used if t not in workers and t != pid) * 1000 / done
    parse, answer = ms(TIMED[0][0]), ms(TIMED[1][0])
    whole, gate, decode, resize, batcher, network, search, classify, colour = (ms(row) for row, *_ in TIMED[2:])
    rows = [
        ("multipart parse (python-multipart)", parse, "event loop"),
        ("JSON answer", answer, "event loop"),
        ("event loop's rest: HTTP (uvicorn, httptools), the body's read, routing, hand-offs to and from the "
         "thread pool, uvloop's sockets", loop_ms - parse - answer, "event loop"),
        ("header gate (image_info)", gate, "workers"),
        ("decode (strict, reduced scale: libjpeg)", decode, "workers"),
        ("resize to the network input", resize, "workers"),
        ("network (the embedder's infer, one call a batch, on the leader's thread)", network, "workers"),
        ("micro-batcher: waiting and waking, less the network", batcher - network, "workers"),
        ("index search", search, "workers"),
        ("classifier input (an ensemble's own resize)", classify, "workers"),
        ("garment colour (colour modes)", colour, "workers"),
        ("search_image's rest: memory budget, decode slots, checks",
         whole - gate - decode - resize - batcher - search - classify - colour, "workers"),
        ("worker threads outside search_image: anyio's pool (queue, futures, wake-ups)", worker_ms - whole, "workers"),
        ("threads that ran no photo (OpenVINO's, OpenMP's, the run watcher)", other_ms, "other"),
    ]
    return rows


# py-spy's view (``--py-spy``): (stage, substrings of a frame "function (file:line)"); a sample goes to the
# stage of its innermost frame that matches, the rules tried in this order for each frame
STAGES = [
    ("network", ("fashion/embedding/", "openvino/", "_infer (fashion/service/query.py", "_network_batch (")),
    ("header gate", ("image_info (",)),
    ("resize", ("fashion/resample.py", "fashion/resize.py", "resize_image (", "_resized (", "network_input (", "resize_center_crop (")),
    ("decode", ("fashion/jpeg.py", "simplejpeg", "fashion/images.py", "PIL/")),
    ("index search", ("_search (fashion/service/query.py", "faiss/", "fashion/neighbors/", "one_openmp_thread (")),
    ("micro-batcher", ("fashion/service/batcher.py",)),
    ("memory budget", ("fashion/service/budget.py",)),
    ("multipart body: read + parse", ("fashion/server/upload.py", "python_multipart/")),
    ("JSON answer", ("search_json (", "json/", "render (starlette/responses.py")),
    ("search_image's other Python", ("fashion/",)),
    ("HTTP protocol (uvicorn, httptools)", ("uvicorn/", "httptools/", "h11/")),
    ("thread hand-offs (anyio, futures, threading)", ("anyio/", "concurrent/futures", "threading.py", "queue.py")),
    ("routing, parameters, middleware (starlette, fastapi, pydantic)", ("starlette/", "fastapi/", "pydantic")),
    ("event loop: asyncio's Python", ("asyncio/", "selectors.py")),
]
OTHER = "other Python"
UVLOOP = "event loop: uvloop's C (sockets, epoll, callbacks), no Python frame above Runner.run"
# innermost frames of a thread blocked in a wait: not CPU (see the module docstring)
BLOCKED = re.compile(r"(Condition\.wait|Semaphore\.acquire|Event\.wait|Queue\.get) \((threading|queue)\.py:\d+\)$")


def stage_of(frames: list[str]) -> str | None:
    """The stage of one sample (frames root first) by its innermost frame that a rule names; None: blocked."""
    if frames and BLOCKED.match(frames[-1]):
        return None
    if frames and frames[-1].startswith("Runner.run ("):
        return UVLOOP
    for frame in reversed(frames):
        for stage, keys in STAGES:
            if any(k in frame for k in keys):
                return stage
    return OTHER


def read_samples(path: Path) -> tuple[dict[int, dict[str, int]], int]:
    """py-spy's raw output ("thread (TID): NAME;frame;...;frame COUNT") → ({tid: {stage: samples}}, the
    blocked samples left out)."""
    per: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    blocked = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        m = re.match(r"thread \((?:0x)?([0-9a-fA-F]+)\)", frames[0])
        if not m or not count.isdigit():
            continue
        tid = int(m.group(1), 16 if frames[0].startswith("thread (0x") else 10)
        stage = stage_of(frames[1:])
        if stage is None:
            blocked += int(count)
        else:
            per[tid][stage] += int(count)
    return per, blocked


def spy_table(samples: dict, used: dict[int, tuple[float, int, float]], pid: int, done: int) -> list:
    stage_s: dict[str, float] = defaultdict(float)
    where: dict[str, set] = defaultdict(set)
    for tid, (cpu, *_) in used.items():
        seen = samples.get(tid)
        if cpu <= 0:
            continue
        if not seen:
            stage_s["threads with no Python sample"] += cpu
            continue
        total = sum(seen.values())
        for stage, count in seen.items():
            stage_s[stage] += cpu * count / total
            where[stage].add("event loop" if tid == pid else "workers")
    return [(s, v * 1000 / done, ", ".join(sorted(where[s])) or "other")
            for s, v in sorted(stage_s.items(), key=lambda kv: -kv[1])]


def wall_table(before: dict, after: dict, done: int, window_s: float) -> list:
    """[(timed row, CPU ms a photo, wall ms a photo, calls' wall share of the window)]: wall minus CPU is a
    stage's time off the CPU (waiting for a core, the GIL or a lock); a share near 1 for the network is a
    network that never idles (the share of a row run by several threads at once can pass 1)."""
    out = []
    for row, *_ in TIMED:
        a, b = after["totals"][row], before["totals"].get(row, [0.0, 0, 0, 0.0])
        out.append((row, (a[0] - b[0]) * 1000 / done, (a[3] - b[3]) * 1000 / done, (a[3] - b[3]) / window_s))
    return out


def print_table(title: str, rows: list, total_ms: float) -> None:
    print(f"\n{title}\n\n| stage | CPU ms a photo | share | thread |\n|---|---|---|---|")
    for stage, value, where in rows:
        print(f"| {stage} | {value:.2f} | {100 * value / total_ms:.1f} % | {where} |")
    print(f"| **all (the server's threads, /proc)** | **{total_ms:.2f}** | 100 % | |")


def under_load(args) -> int:
    """``query_profile.py --under-load C``: one profiled server of this checkout, or with ``--base-tree``,
    ``--rounds`` alternations of the other checkout's and this one's (the same run, load and windows)."""
    import shutil

    sys.path.insert(0, os.fspath(REPO))
    from serve import multipart_body

    need = ["wrk"] + (["py-spy"] if args.py_spy else [])
    if any(shutil.which(tool) is None for tool in need):
        raise SystemExit(f"--under-load needs {' and '.join(need)} (apt-get install wrk; pip install py-spy)")
    photos = sorted(q for q in Path(args.photos).rglob("*") if q.suffix.lower() in (".jpg", ".jpeg"))[:args.n]
    bodies = [multipart_body(q)[0] for q in photos]
    trees = [("this tree", REPO)]
    if args.base_tree:
        trees = [("base tree " + os.fspath(args.base_tree), Path(args.base_tree).resolve()), *trees]
    summary = []
    for r in range(args.rounds if args.base_tree else 1):
        for label, tree in trees:
            summary.append((r + 1, label, *profile_one(args, tree, label, bodies)))
    if len(summary) > 1:
        rows = [row for row, *_ in stage_table_rows()]
        print("\nCPU ms a photo by round and tree\n\n| | " + " | ".join(f"r{r} {label.split()[0]}" for r, label, *_ in summary)
              + " |\n|---|" + "---|" * len(summary))
        for i, row in enumerate(rows):
            print(f"| {row} | " + " | ".join(f"{table[i][1]:.2f}" for *_, table, _ in summary) + " |")
        print("| **all** | " + " | ".join(f"**{total:.2f}**" for *_, total in summary) + " |")
    return 0


def stage_table_rows() -> list:
    """The rows of :func:`stage_table`, for the comparison table's first column."""
    return stage_table({"totals": {}}, {"totals": {row: [0.0, 0, 0] for row, *_ in TIMED}, "workers": []}, {}, 0, 1)


def profile_one(args, tree: Path, label: str, bodies: list[bytes]):
    """One profiled `fashion serve` of ``tree``: warm-up, the timers' window (and py-spy's); prints them and
    returns (its stage table, server CPU ms a photo)."""
    from serve import BOUNDARY, load_wrk

    c, seconds = args.under_load, args.seconds
    work = Path(tempfile.mkdtemp(prefix="serve-profile-"))
    try:
        with _Child(args.run, c, work, tree) as server:
            ready = server.wait_ready(300)
            pid = server.pid
            print(f"\n## {label}: `fashion serve` {args.run} (per-stage timers on) ready in {ready:.2f} s; wrk at "
                  f"c = {c}, {seconds:g} s a window after a {args.warmup:g} s warm-up, {len(bodies)} photos; load "
                  f"average {os.getloadavg()[0]:.2f}", flush=True)
            load_wrk(server.url, bodies, BOUNDARY, c, args.warmup, work / "wrk")  # threads, arenas, batch sizes

            def window(spy: bool):
                settle(pid)
                timers0, cpu0, box0, load0 = server.timers(), thread_cpu(pid), machine_cpu(), os.getloadavg()[0]
                proc = None
                if spy:
                    proc = subprocess.Popen(["py-spy", "record", "--pid", str(pid), "--rate", str(args.rate),
                                             "--nonblocking", "--threads", "--format", "raw", "--output",
                                             os.fspath(work / "spy.txt"), "--duration", f"{seconds:g}"],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                    time.sleep(0.5)  # py-spy attached before the load starts
                got = load_wrk(server.url, bodies, BOUNDARY, c, seconds, work / "wrk")
                cpu1, box1, timers1 = thread_cpu(pid), machine_cpu(), server.timers()
                if proc is not None:
                    err = proc.communicate(timeout=120)[1]
                    if proc.returncode:
                        raise SystemExit(f"py-spy failed: {err.decode(errors='replace')[-500:]}")
                zero = (0.0, 0, 0.0)
                used = {t: tuple(a - b for a, b in zip(cpu1[t], cpu0.get(t, zero))) for t in cpu1}
                done = max(got["requests"] - got["errors"], 1)
                busy, idle = box1[0] - box0[0], box1[1] - box0[1]
                server_s = sum(u[0] for u in used.values())
                network = timers1["totals"][TIMED[7][0]]
                net0 = timers0["totals"].get(TIMED[7][0], [0.0, 0, 0, 0.0])
                batch = (network[2] - net0[2]) / max(network[1] - net0[1], 1)
                workers = set(timers1["workers"])
                part = {"event loop": [u for t, u in used.items() if t == pid],
                        "workers": [u for t, u in used.items() if t in workers],
                        "other threads": [u for t, u in used.items() if t != pid and t not in workers]}
                if got["first_error"]:
                    print("first error:", got["first_error"][-300:])
                print(f"window {'with py-spy' if spy else 'with the timers'}: {done} photos, {got['errors']} "
                      f"errors, {got['rps']} photos/s, p50 {got['p50_ms']} ms, p99 {got['p99_ms']} ms; server CPU "
                      f"{server_s * 1000 / done:.2f} ms a photo = {server_s / got['wall_s']:.2f} cores busy ("
                      + ", ".join(f"{name} {sum(u[0] for u in us) * 1000 / done:.2f}, of it system "
                                  f"{sum(u[2] for u in us) * 1000 / done:.2f}" for name, us in part.items())
                      + f"); {sum(u[1] for u in used.values()) / done:.1f} context switches a photo; {batch:.2f} "
                      f"photos a network call; wrk {got['client_cpu_ms']} ms a request; the machine "
                      f"{busy / got['wall_s']:.2f} cores busy, {idle / got['wall_s']:.2f} idle; load average "
                      f"{load0:.2f} -> {os.getloadavg()[0]:.2f}", flush=True)
                return got, used, done, timers0, timers1

            got, used, done, timers0, timers1 = window(False)
            total_ms = sum(u[0] for u in used.values()) * 1000 / done
            table = stage_table(timers0, timers1, used, pid, done)
            print_table(f"server CPU a photo at c = {c}, per-stage timers ({done} photos)", table, total_ms)
            print("\n| timed call | CPU ms a photo | wall ms a photo | wall share of the window |\n|---|---|---|---|")
            for row, cpu_ms, wall_ms, share in wall_table(timers0, timers1, done, got["wall_s"]):
                print(f"| {row} | {cpu_ms:.2f} | {wall_ms:.2f} | {share:.2f} |")
            cores = os.cpu_count() or 1
            print(f"\n{cores} cores at {total_ms:.2f} ms a photo (server) + {got['client_cpu_ms']} ms (wrk): at most "
                  f"{cores * 1000 / (total_ms + got['client_cpu_ms']):.0f} photos/s; c = {c} at a 60 ms mean latency "
                  f"needs {c * 1000 / 60:.0f} photos/s (Little's law), i.e. at most {cores * 60 / c:.2f} ms of CPU a "
                  f"photo, client included, with no core idle", flush=True)
            if args.py_spy:
                _, used, done, _, _ = window(True)
                samples, blocked = read_samples(work / "spy.txt")
                print_table(f"the same, py-spy's split of each thread's CPU ({done} photos, "
                            f"{sum(sum(s.values()) for s in samples.values())} samples, {blocked} blocked ones left "
                            f"out)", spy_table(samples, used, pid, done), sum(u[0] for u in used.values()) * 1000 / done)
    finally:
        if os.environ.get("SERVE_PROFILE_KEEP"):
            print("kept", work)
        else:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    return table, total_ms

if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        sys.exit(child(sys.argv[2:]))
    raise SystemExit("run it through benchmarks/query_profile.py --under-load C")
