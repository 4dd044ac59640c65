"""What `fashion serve` costs per request beyond the service's own work: /healthz and id queries over HTTP,
this checkout against another one (``--baseline DIR``, e.g. a `git archive` of an earlier commit),
each started in turn on the same run, alternated.

    python benchmarks/serve_http.py RUN_DIR --baseline /tmp/before --rounds 2 -n 1500

Per server: seconds from its start to /healthz ok; per endpoint: latency p50/p95 at concurrency 1 (keep-alive, benchmarks/serve.py's client) and
the server's own CPU per request (user + system of all its threads: what load on shared cores inflates
least); the load average beside each line. An id query's own work (``neighbors_of``) is printed by
benchmarks/query_served.py.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, os.fspath(REPO))
sys.path.insert(0, os.fspath(REPO / "benchmarks"))


def measure(run_dir: str, checkout: Path, n: int) -> list[str]:
    import psutil

    from fashion.server.launch import running_server
    from serve import load

    lines = []
    with running_server(run_dir, timeout=300, cwd=os.fspath(checkout)) as server:
        proc = psutil.Process(server.process.pid)
        lines.append(f"{checkout.name:>12s} start-up to /healthz {server.startup_s:.2f} s  "
                     f"RSS {proc.memory_info().rss / 2**20:.0f} MB  load {os.getloadavg()[0]:.2f}")
        items = int(server.health["items"])
        requests = {"/healthz": lambda rnd: ("GET", "/healthz", None, {}),
                    "id": lambda rnd: ("GET", f"/api/items/{rnd.randrange(items)}/neighbors?k=10", None, {})}
        for name, make in requests.items():
            load(server.url, make, 200, 1, 60)  # warm-up
            cpu = sum(proc.cpu_times()[:2])
            cell = load(server.url, make, n, 1, 120)
            per = (sum(proc.cpu_times()[:2]) - cpu) * 1000 / max(cell["requests"], 1)
            lines.append(f"{checkout.name:>12s} {name:8s}: p50 {cell['p50_ms']:5.1f} ms  p95 {cell['p95_ms']:5.1f}  "
                         f"{cell['rps']:6.1f} req/s  server CPU {per:.3f} ms/req  errors {cell['errors']}  "
                         f"load {os.getloadavg()[0]:.2f}")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="a finished run")
    p.add_argument("--baseline", default=None, help="another checkout's root (its fashion/ is served)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("-n", type=int, default=1500, help="requests per endpoint")
    args = p.parse_args(argv)
    checkouts = [Path(args.baseline).resolve()] if args.baseline else []
    checkouts.append(REPO)
    print(f"run {args.run}; load average at start {[round(x, 2) for x in os.getloadavg()]} on {os.cpu_count()} cores")
    random.seed(0)
    for _ in range(args.rounds):
        for checkout in checkouts:
            for line in measure(args.run, checkout, args.n):
                print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
