"""Where a photo query's time goes: each stage of `POST /api/search`, timed alone over N real photos.

    python benchmarks/query_profile.py --run /tmp/serve-bench/run100000 -n 200
    python benchmarks/query_profile.py --run RUN --upscale 4      # photos 4x larger: the reduced JPEG decode

One process opens the run as `fashion serve` does (:class:`fashion.service.SimilarityService`) and times,
per photo (median and mean ms over ``-n`` photos, each stage run on all of them in turn):

- the stages of the service in order: multipart parsing, the header check, the decode through the safe
  gate (the full-size decode with its separate libjpeg data check, as before; and with ``min_size``, the
  reduced-scale decode that checks the data in the same pass, used from twice the network's input on),
  the resize to the network's input, the network (two passes, embed + the classifier's own predict on
  its own resize, as before; one pass, vector and prediction; and the one pass per photo in batches of
  2, 4 and 8), one index search, the JSON body;
- the service's own `search_image` end to end (what the HTTP handler calls in its thread pool), the
  thread-pool hop (an empty function through starlette's run_in_threadpool), and over HTTP: the same
  photos posted to a `fashion serve` child on loopback one at a time (keep-alive), and GET /healthz
  (the HTTP floor). HTTP minus `search_image` is the server's and the client's HTTP work;
- how far the one pass's prediction is from the classifier's own pass (top-1 agreement, largest
  probability difference), and with ``--upscale``, how far the reduced decode's vectors are from the
  full-size decode's (cosine) and its network input (grey levels).

``--under-load C`` (issue 31 item 2: p99 at concurrency 16) profiles the server instead: a `fashion serve`
child whose photo path is wrapped in per-thread CPU timers (``benchmarks/serve_profile.py``; the library
itself is untouched) answers `wrk` at concurrency C, and one ``--seconds`` window after a warm-up prints
photos/s, p50/p99, the server's and the machine's busy cores, context switches, and the server's CPU a photo
stage by stage (multipart, JSON and the rest of the event loop; gate, decode, resize, network, the
micro-batcher's waits, search, the thread pool; other threads), each timed call's wall time beside its CPU
(the network's wall share of the window: near 1, the one network thread is the bottleneck), and the
Little's-law arithmetic of the target; ``--base-tree DIR`` profiles DIR's `fashion serve` first and this one's after it, ``--rounds``
times, and ends with their stage tables side by side; ``--py-spy`` adds a py-spy window (``--rate`` Hz) that splits each thread's CPU by its samples::

    python benchmarks/query_profile.py --run /tmp/serve-w/run100000 --under-load 16 --seconds 15
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, os.fspath(REPO))
sys.path.insert(0, os.fspath(REPO / "benchmarks"))


def timed(fn, items) -> list[float]:
    """ms of ``fn(item)`` for each item (after one untimed call)."""
    fn(items[0])
    out = []
    for item in items:
        t0 = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def upscaled(data: bytes, factor: int) -> bytes:
    """The JPEG ``data`` resized ``factor`` times larger (Lanczos), saved at quality 90."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        big = im.convert("RGB").resize((im.width * factor, im.height * factor), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    big.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a finished run (e.g. the one benchmarks/serve.py builds)")
    p.add_argument("--photos", default="/work/shared/data/clothing-dataset-small/test",
                   help="folder (searched recursively) of JPEG query photos")
    p.add_argument("-n", type=int, default=200, help="photos")
    p.add_argument("--upscale", type=int, default=1, help="enlarge the photos this many times first")
    p.add_argument("--no-http", action="store_true", help="skip the HTTP rows (no `fashion serve` child)")
    p.add_argument("--json", default=None, help="also write the rows here")
    p.add_argument("--under-load", type=int, default=None, metavar="C",
                   help="profile a `fashion serve` child under wrk at concurrency C instead (see above)")
    p.add_argument("--seconds", type=float, default=15.0, help="--under-load: seconds of each window")
    p.add_argument("--warmup", type=float, default=5.0, help="--under-load: seconds of load before the window")
    p.add_argument("--py-spy", action="store_true", help="--under-load: also a py-spy window (see above)")
    p.add_argument("--base-tree", default=None,
                   help="--under-load: another checkout's server profiled first, alternated with this one's")
    p.add_argument("--rounds", type=int, default=2, help="--base-tree: alternations")
    p.add_argument("--rate", type=int, default=250, help="--py-spy: samples a second")
    args = p.parse_args(argv)
    if args.under_load:
        from serve_profile import under_load

        return under_load(args)

    import torch
    from PIL import Image
    from starlette.concurrency import run_in_threadpool

    from fashion.images import image_info, open_image_bytes
    from fashion.resize import resize_image
    from fashion.server.upload import parse_form
    from fashion.service import SimilarityService
    from fashion.service.query import network_input
    from serve import multipart_body

    photos = sorted(q for q in Path(args.photos).rglob("*") if q.suffix.lower() in (".jpg", ".jpeg"))[:args.n]
    datas = [q.read_bytes() for q in photos]
    if args.upscale > 1:
        datas = [upscaled(d, args.upscale) for d in datas]
    forms = [multipart_body(q) for q in photos]
    forms = [(b.replace(q.read_bytes(), d), c) for (b, c), q, d in zip(forms, photos, datas)]
    t0 = time.perf_counter()
    service = SimilarityService.open(args.run)
    open_s = time.perf_counter() - t0
    emb = served = service.embedder
    if not hasattr(emb, "forward"):  # a saved OpenVINO network (fashion.embedding.ir): the torch embedder beside it
        from fashion.service.loading import embedder_for

        emb = embedder_for(service.run.info)  # the same network, rebuilt and converted: the rows "before"
    size, limit = emb.size, service.max_pixels
    classifier = None
    if service.run.info["embedder"].get("model_dir"):
        from fashion.modelio import load_model

        classifier = load_model(service.run.info["embedder"]["model_dir"])  # the second pass, as before
    print(f"run {args.run}: {service.n_gallery} vectors, index {service.run.index.name}, {emb.name} {emb.runtime} ({type(served).__name__} served) "
          f"{emb.precision} at {size} px, layer {emb.layer}; {len(datas)} photos "
          f"(e.g. {Image.open(photos[0]).size} x{args.upscale}), {torch.get_num_threads()} torch threads; "
          f"opened in {open_s:.1f} s", flush=True)

    rows: dict[str, list[float]] = {}
    rows["multipart parse"] = timed(lambda f: parse_form(f[0], f[1]), forms)
    rows["header (image_info)"] = timed(lambda d: image_info("<upload>", d, max_pixels=limit), datas)
    rows["decode full + data check (before)"] = timed(
        lambda d: open_image_bytes(d, max_pixels=limit, strict=True), datas)
    rows["decode with min_size (now)"] = timed(
        lambda d: open_image_bytes(d, max_pixels=limit, strict=True, min_size=size), datas)
    pictures = [open_image_bytes(d, max_pixels=limit, strict=True, min_size=size) for d in datas]
    rows["resize to the network input"] = timed(lambda im: network_input(emb, im), pictures)
    from fashion.resample import resize_bilinear_aa  # what a server without torch resizes with (same bytes)

    rows["resize, numpy kernel (a server without torch)"] = timed(
        lambda im: resize_bilinear_aa(np.asarray(im), size, size), pictures)
    full = [open_image_bytes(d, max_pixels=limit, strict=True) for d in datas]
    if any(f.size != r.size for f, r in zip(full, pictures)):  # the reduced decode's effect on the vectors
        def vector(im):
            return emb.forward(torch.from_numpy(network_input(emb, im)[None]).permute(0, 3, 1, 2)).numpy()[0]

        cos = np.array([float(vector(f) @ vector(r)) for f, r in zip(full, pictures)])
        grey = [np.abs(network_input(emb, f).astype(int) - network_input(emb, r)).mean() for f, r in zip(full, pictures)]
        print(f"reduced decode ({pictures[0].size} instead of {full[0].size}): cosine to the full-size decode's vector "
              f"min {cos.min():.4f}, median {np.median(cos):.4f}; network input mean |difference| "
              f"median {np.median(grey):.2f}, max {max(grey):.2f} grey levels", flush=True)
    del full
    inputs = [network_input(emb, im) for im in pictures]
    batches = [torch.from_numpy(x[None]).permute(0, 3, 1, 2) for x in inputs]
    rows["network: embed pass"] = timed(emb.forward, batches)
    if classifier is not None:
        smalls = [Image.fromarray(resize_image(im, classifier.size, "squish")) for im in pictures]
        rows["classifier resize (before)"] = timed(
            lambda im: Image.fromarray(resize_image(im, classifier.size, "squish")), pictures)
        rows["network: classifier pass (before)"] = timed(lambda im: classifier.predict([im]), smalls)
    if emb.can_classify:
        rows["network: one pass, vector + prediction (now)"] = timed(emb.classify, batches)
        if classifier is not None:  # the one pass's prediction against the classifier's own (fp32) pass
            one = np.concatenate([emb.classify(x)[1].numpy() for x in batches])
            two = classifier.predict(smalls).numpy()
            print(f"one pass vs the classifier's own pass ({emb.precision}): top-1 the same on "
                  f"{int((one.argmax(1) == two.argmax(1)).sum())} of {len(one)} photos, probabilities within "
                  f"{np.abs(one - two).max():.3f} (median {np.median(np.abs(one - two).max(1)):.4f})", flush=True)
        stacked = torch.from_numpy(np.stack(inputs)).permute(0, 3, 1, 2)
        for b in (2, 4, 8):
            if len(inputs) >= b:
                per = timed(emb.classify, [stacked[i:i + b] for i in range(0, len(inputs) - b + 1, b)])
                rows[f"network: one pass in batches of {b}, per photo"] = [t / b for t in per]
    if served is not emb:  # the saved network as the server runs it (numpy in, numpy out)
        rows["network: saved network, one pass (served now)"] = timed(lambda x: served.infer(x[None]), inputs)
        for b in (2, 4, 8):
            if len(inputs) >= b:
                per = timed(served.infer, [np.stack(inputs[i:i + b]) for i in range(0, len(inputs) - b + 1, b)])
                rows[f"network: saved network in batches of {b}, per photo"] = [t / b for t in per]
    vectors = [emb.forward(x).numpy()[0] for x in batches]
    rows["index search (k=10)"] = timed(lambda v: service._search(v, 10, None), vectors)
    found = [service.search_image(d, k=10) for d in datas[:20]]
    rows["JSON body"] = timed(lambda f: json.dumps({"k": f.k, "query_id": f.query_id,
                                                    "prediction": asdict(f.prediction) if f.prediction else None,
                                                    "results": [asdict(m) for m in f.results]}).encode(), found)
    rows["search_image end to end (now)"] = timed(lambda d: service.search_image(d, k=10), datas)

    async def hops():
        out = []
        for _ in range(len(datas)):
            t0 = time.perf_counter()
            await run_in_threadpool(lambda: None)
            out.append((time.perf_counter() - t0) * 1000)
        return out

    rows["thread-pool hop"] = asyncio.run(hops())
    if not args.no_http:
        from fashion.server.launch import running_server

        with running_server(args.run, timeout=300) as server:
            host, port = server.url.removeprefix("http://").split(":")
            conn = http.client.HTTPConnection(host, int(port), timeout=60)

            def post(form):
                conn.request("POST", "/api/search", body=form[0], headers={"Content-Type": form[1]})
                response = conn.getresponse()
                assert response.status == 200, response.read()[:200]
                response.read()

            def get(path):
                conn.request("GET", path)
                response = conn.getresponse()
                assert response.status == 200
                response.read()

            timed(post, forms[:20])  # warm-up
            rows["HTTP POST /api/search (c=1)"] = timed(post, forms)
            rows["HTTP GET /healthz"] = timed(lambda _: get("/healthz"), forms)
            rows["HTTP GET /api/items/{id}/neighbors"] = timed(lambda i: get(f"/api/items/{i}/neighbors?k=10"),
                                                               list(range(len(forms))))
            conn.close()

    print(f"\n| stage (per photo) | median ms | mean ms |\n|---|---|---|")
    for name, times in rows.items():
        print(f"| {name} | {statistics.median(times):.2f} | {statistics.fmean(times):.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({k: [round(t, 3) for t in v] for k, v in rows.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
