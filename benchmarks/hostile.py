"""`fashion serve` under hostile uploads (issue 29): memory stays bounded, other queries stay fast.

    python benchmarks/hostile.py                    # the figures in benchmarks/README.md
    python benchmarks/hostile.py --uploads 8        # smoke

1. A run on the bundled sample (60 photos, torch runtime), or ``--run DIR``.
2. ``fashion serve`` on 127.0.0.1 (a free port, the default memory budget); its resident memory once
   /healthz answers is the start-up RSS.
3. ``--uploads`` concurrent POST /api/search (one connection each, released together), cycling through
   four hostile photos: a 37 KB JPEG whose header claims 9000 x 9000 px (its data corrupt), the same
   trick at 6000 x 6000 (under the pixel limit: only the data check refuses it), a valid 9000 x 9900 PNG
   (89 Mpx, over the limit) and a valid 6000 x 6000 PNG (36 Mpx, under it: decoded for real).
4. Meanwhile one client polls GET /healthz and GET /api/items/{id}/neighbors in turn, and a sampler
   reads the server's RSS every 10 ms.

Prints the statuses, the peak RSS over the start-up one, and the latency of the other queries
(p50/p95/max), and checks them against the issue's targets (--json writes it all).
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import statistics
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, os.fspath(REPO))

from fashion.server.launch import running_server  # noqa: E402

TARGETS = {"rss_growth_mb": 1024.0, "healthz_max_ms": 100.0, "id_max_ms": 100.0}


def corrupt_jpeg(width: int, height: int) -> bytes:
    """A small noisy JPEG whose frame header is patched to claim ``width`` x ``height`` px: its entropy
    data ends long before that (libjpeg only warns and fills the rest with grey)."""
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90)
    data = bytearray(buf.getvalue())
    i = 2
    while data[i + 1] not in (0xC0, 0xC1, 0xC2):  # walk the segments to the frame header
        i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    data[i + 5:i + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def big_png(width: int, height: int) -> bytes:
    """A valid RGB PNG of one colour: a few hundred KB that decode to width x height x 4 bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (120, 40, 200)).save(buf, "PNG")
    return buf.getvalue()


def payloads() -> list[tuple[str, bytes]]:
    return [("corrupt_9000.jpg", corrupt_jpeg(9000, 9000)), ("corrupt_6000.jpg", corrupt_jpeg(6000, 6000)),
            ("valid_9000x9900.png", big_png(9000, 9900)), ("valid_6000.png", big_png(6000, 6000))]


def _multipart(name: str, data: bytes) -> tuple[bytes, str]:
    boundary = "hostile-boundary-7d1f"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _upload(port: int, name: str, data: bytes, start: threading.Barrier, out: list) -> None:
    body, ctype = _multipart(name, data)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        start.wait()
        t = time.perf_counter()
        conn.request("POST", "/api/search", body=body, headers={"Content-Type": ctype})
        response = conn.getresponse()
        text = response.read().decode("utf-8", "replace")
        out.append({"photo": name, "status": response.status, "s": time.perf_counter() - t,
                    "retry_after": response.getheader("Retry-After"), "body": text[:300]})
    except (OSError, http.client.HTTPException) as exc:
        out.append({"photo": name, "status": None, "error": repr(exc)})
    finally:
        conn.close()


def _probe(port: int, stop: threading.Event, out: dict, n_items: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    i = 0
    while not stop.is_set():
        for kind, path in (("healthz", "/healthz"), ("id", f"/api/items/{i % n_items}/neighbors?k=10")):
            t = time.perf_counter()
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            out[kind].append((time.perf_counter() - t) * 1000)
            if response.status != 200:
                out["errors"].append(f"{path}: {response.status}")
        i += 7
        time.sleep(0.02)
    conn.close()


def _sample_rss(pid: int, stop: threading.Event, out: list) -> None:
    import psutil

    process = psutil.Process(pid)
    while not stop.is_set():
        try:
            out.append(process.memory_info().rss)
        except psutil.Error:
            return
        time.sleep(0.01)


def _quantiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    return {"n": len(values), "p50": round(statistics.median(ordered), 1),
            "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1), "max": round(ordered[-1], 1)}


def hostile_load(run_dir, uploads: int = 32, extra_args=()) -> dict:
    """Serve ``run_dir`` and run :func:`storm` on it."""
    with running_server(run_dir, extra_args=extra_args) as server:
        return storm(server, uploads)


def storm(server, uploads: int = 32) -> dict:
    """Send ``uploads`` concurrent hostile photos to a running server while polling its other endpoints."""
    import psutil

    photos = payloads()
    port = int(server.url.rsplit(":", 1)[1])
    time.sleep(0.5)  # let the start-up settle (the warm-up forward pass, the first allocations)
    start_rss = psutil.Process(server.process.pid).memory_info().rss
    stop, rss, latency = threading.Event(), [], {"healthz": [], "id": [], "errors": []}
    helpers = [threading.Thread(target=_sample_rss, args=(server.process.pid, stop, rss)),
               threading.Thread(target=_probe, args=(port, stop, latency, server.health["items"]))]
    for thread in helpers:
        thread.start()
    barrier, results = threading.Barrier(uploads), []
    clients = [threading.Thread(target=_upload, args=(port, *photos[n % len(photos)], barrier, results))
               for n in range(uploads)]
    t = time.perf_counter()
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    elapsed = time.perf_counter() - t
    time.sleep(0.3)
    stop.set()
    for thread in helpers:
        thread.join()
    statuses: dict = {}
    for r in results:
        key = f"{r['photo']} {r['status']}"
        statuses[key] = statuses.get(key, 0) + 1
    return {"uploads": uploads, "seconds": round(elapsed, 2), "statuses": dict(sorted(statuses.items())),
            "start_rss_mb": round(start_rss / 2**20), "peak_rss_mb": round(max(rss, default=start_rss) / 2**20),
            "rss_growth_mb": round((max(rss, default=start_rss) - start_rss) / 2**20),
            "healthz_ms": _quantiles(latency["healthz"]), "id_ms": _quantiles(latency["id"]),
            "probe_errors": latency["errors"], "results": results,
            "photo_bytes": {name: len(data) for name, data in photos}}


def checks(result: dict) -> dict:
    """Each target of issue 29 → whether this result meets it."""
    bad = [r for r in result["results"] if r["status"] not in (200, 422, 503)]
    no_retry = [r for r in result["results"] if r["status"] == 503 and not r.get("retry_after")]
    return {"rss growth < 1 GB": result["rss_growth_mb"] < TARGETS["rss_growth_mb"],
            "/healthz < 100 ms": result["healthz_ms"].get("max", 1e9) < TARGETS["healthz_max_ms"],
            "id queries < 100 ms": result["id_ms"].get("max", 1e9) < TARGETS["id_max_ms"],
            "only 200/422/503": not bad, "503 carries Retry-After": not no_retry,
            "corrupt photos never 200": not any(r["status"] == 200 and "corrupt" in r["photo"]
                                                for r in result["results"]),
            "probes all 200": not result["probe_errors"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default=None, help="a finished run; default: one on the bundled sample (60 photos)")
    parser.add_argument("--uploads", type=int, default=32)
    parser.add_argument("--json", default=None, help="also write the result here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run
        if run_dir is None:
            from fashion.retrieval import MeasureConfig, run

            run_dir = os.path.join(tmp, "run")
            run(MeasureConfig(output_dir=run_dir, limit=60, k=5, grids=0, runtime="torch", num_workers=0))
        result = hostile_load(run_dir, args.uploads)
    result["checks"] = checks(result)
    print(f"{result['uploads']} concurrent hostile uploads in {result['seconds']} s:")
    for key, count in result["statuses"].items():
        print(f"  {key}: {count}")
    print(f"server RSS: {result['start_rss_mb']} MB at start, peak {result['peak_rss_mb']} MB "
          f"(+{result['rss_growth_mb']} MB)")
    for kind in ("healthz", "id"):
        q = result[f"{kind}_ms"]
        print(f"{kind} during the storm: {q.get('n')} requests, p50 {q.get('p50')} ms, p95 {q.get('p95')} ms, "
              f"max {q.get('max')} ms")
    for name, ok in result["checks"].items():
        print(f"  [{'ok' if ok else 'FAIL'}] {name}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0 if all(result["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
