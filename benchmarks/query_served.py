"""A photo and an id query as `fashion serve` answers them (no torch in the process), stage by stage,
each changed stage beside what it replaced, in the same run: wall ms and CPU ms.

    python benchmarks/query_served.py --run /tmp/serve-bench/run100000 -n 100
    python benchmarks/query_served.py --run RUN --int8 DIR/int8-model.xml   # + an int8 network's cost

One process opens the run as `fashion serve` does (:class:`fashion.service.SimilarityService`, the run's
saved OpenVINO network) and times over ``-n`` photos and ids (median wall ms; mean CPU ms of the whole
process per call, so the network's and OpenMP's threads count, and a figure that load on shared cores
inflates less than the wall time):

- photo: multipart parsing, the header check, the decode (reduced-scale for large JPEGs), the resize to
  the network's input (the sparse-product kernel of fashion.resample against its former numpy tap loop,
  kept here as the anchor, and Pillow's own BILINEAR, which is not bitwise), the network at batch 1 as
  served and as compiled with other settings (threads 1/2; the input shape fixed at batch 1 against
  the dynamic batch; an int8 network with ``--int8``), the index search, the JSON body, end to end;
- id: the stored vector's read, the index search with faiss' OpenMP team of one thread (now) and of all
  cores (before), the JSON body (the response rendered from the dataclasses now; asdict and FastAPI's
  jsonable_encoder before), `neighbors_of` end to end;
- the load average before and after: on shared cores, read the CPU column first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, os.fspath(REPO))
sys.path.insert(0, os.fspath(REPO / "benchmarks"))


def timed(fn, items) -> tuple[float, float]:
    """(median wall ms, mean process CPU ms) of ``fn(item)`` over the items, after one untimed call."""
    fn(items[0])
    walls = []
    c0 = time.process_time()
    for item in items:
        t0 = time.perf_counter()
        fn(item)
        walls.append((time.perf_counter() - t0) * 1000)
    return statistics.median(walls), (time.process_time() - c0) * 1000 / len(items)


def tap_loop_resize(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """fashion.resample's former kernel (a numpy loop over the taps; the same bytes): the anchor."""
    from fashion.resample import axis_weights

    def rows(a, out_size):
        xmin, weights, precision = axis_weights(a.shape[0], out_size)
        acc = np.empty((out_size,) + a.shape[1:], dtype=np.int32)
        term = np.empty_like(acc)
        for k in range(weights.shape[1]):
            np.multiply(a[np.minimum(xmin + k, a.shape[0] - 1)], weights[:, k].astype(np.int32)[:, None, None],
                        out=term if k else acc, dtype=np.int32)
            if k:
                acc += term
        if precision:
            acc += 1 << (precision - 1)
            acc >>= precision
        return np.clip(acc, 0, 255, out=acc).astype(np.uint8)

    out = pixels
    if out.shape[1] != width:
        out = rows(np.ascontiguousarray(out.transpose(1, 0, 2)), width).transpose(1, 0, 2)
    if out.shape[0] != height:
        out = rows(np.ascontiguousarray(out), height)
    return np.ascontiguousarray(out)


def network_variants(served, int8: str | None, inputs: list) -> dict:
    """The served network compiled other ways (precision hint, threads, the input fixed at batch 1), and
    an int8 network: per-photo cost at batch 1."""
    import openvino as ov

    from fashion.embedding.ovcore import openvino_core

    core, rows, size = openvino_core(), {}, served.size
    batch = [x[None].transpose(0, 3, 1, 2).copy() for x in inputs]
    variants = [("saved network", os.fspath(served.directory / "network.xml"), hint, threads, fixed)
                for hint in ("f32", "bf16") for threads in (1, 2) for fixed in (False, True)
                if hint == "f32" or not fixed]
    if int8:
        variants += [("int8 network", int8, "f32", threads, fixed) for threads in (1, 2) for fixed in (False, True)]
    for label, path, hint, threads, fixed in variants:
        model = core.read_model(path)
        model.reshape({model.inputs[0]: ov.PartialShape([1 if fixed else -1, 3, size, size])})
        compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": hint,
                                                     "INFERENCE_NUM_THREADS": threads})
        ran = compiled.get_property("INFERENCE_PRECISION_HINT")
        request = compiled.create_infer_request()
        rows[f"network: {label}, hint {hint} (runs {ran}), {threads} thread(s), "
             f"{'fixed batch 1' if fixed else 'dynamic batch'}"] = timed(lambda x: request.infer([x]), batch)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a finished run (e.g. the one benchmarks/serve.py builds)")
    p.add_argument("--photos", default=os.fspath(REPO / "fashion" / "data" / "sample" / "img"),
                   help="folder (searched recursively) of JPEG query photos (serve.py's)")
    p.add_argument("-n", type=int, default=100, help="photos, and ids")
    p.add_argument("--int8", default=None, help="an int8 OpenVINO network (.xml) to time beside the served one")
    p.add_argument("--json", default=None, help="also write the rows here")
    args = p.parse_args(argv)

    from fastapi.encoders import jsonable_encoder
    from PIL import Image
    from starlette.responses import JSONResponse

    import faiss

    from fashion.images import image_info, open_image_bytes
    from fashion.resample import resize_bilinear_aa
    from fashion.server.app import search_json
    from fashion.server.upload import parse_form
    from fashion.service import SimilarityService
    from fashion.service.query import network_input, one_openmp_thread
    from serve import multipart_body

    load_before = os.getloadavg()
    photos = sorted(q for q in Path(args.photos).rglob("*") if q.suffix.lower() in (".jpg", ".jpeg"))[:args.n]
    datas = [q.read_bytes() for q in photos]
    forms = [multipart_body(q) for q in photos]
    service = SimilarityService.open(args.run)
    emb, limit, size = service.embedder, service.max_pixels, service.embedder.size
    print(f"run {args.run}: {service.n_gallery} vectors, index {service.run.index.name}, {type(emb).__name__} "
          f"{emb.name} {emb.precision} at {size} px ({emb.resize}); {len(datas)} photos, e.g. "
          f"{Image.open(photos[0]).size}; torch imported: {'torch' in sys.modules}; load {load_before}", flush=True)

    rows: dict[str, tuple[float, float]] = {}
    rows["photo: multipart parse"] = timed(lambda f: parse_form(f[0], f[1]), forms)
    rows["photo: header (image_info)"] = timed(lambda d: image_info("<upload>", d, max_pixels=limit), datas)
    rows["photo: decode (min_size: reduced scale when >= 2x)"] = timed(
        lambda d: open_image_bytes(d, max_pixels=limit, strict=True, min_size=size), datas)
    pictures = [open_image_bytes(d, max_pixels=limit, strict=True, min_size=size) for d in datas]
    target = [np.asarray(network_input(emb, im)).shape[:2] for im in pictures[:1]][0]
    arrays = [np.asarray(im) for im in pictures]
    rows["photo: resize, served (network_input: sparse-product kernel)"] = timed(lambda im: network_input(emb, im), pictures)
    rows["photo: resize kernel alone, sparse products (now)"] = timed(
        lambda a: resize_bilinear_aa(a, *target), arrays)
    rows["photo: resize kernel alone, numpy tap loop (before)"] = timed(lambda a: tap_loop_resize(a, *target), arrays)
    rows["photo: resize, Pillow BILINEAR (not bitwise)"] = timed(
        lambda im: im.resize(target[::-1], Image.Resampling.BILINEAR), pictures)
    same = sum(np.array_equal(resize_bilinear_aa(a, *target), tap_loop_resize(a, *target)) for a in arrays)
    print(f"sparse-product resize equal to the tap loop's bytes on {same} of {len(arrays)} photos", flush=True)
    inputs = [network_input(emb, im) for im in pictures]
    rows["photo: network as served (SavedNetwork.infer, batch 1)"] = timed(lambda x: emb.infer(x[None]), inputs)
    rows.update(network_variants(emb, args.int8, inputs))
    vectors = [emb.infer(x[None])[0][0] for x in inputs]
    rows["photo: index search (k=10)"] = timed(lambda v: service._search(v, 10, None), vectors)
    found = [service.search_image(d, k=10) for d in datas[:20]]

    def before_json(f):  # asdict, then FastAPI's encoder, then the render
        body = {"k": f.k, "query_id": f.query_id, "prediction": asdict(f.prediction) if f.prediction else None,
                "results": [asdict(m) for m in f.results], "filters": f.filters, "ignored": f.ignored,
                "colour": f.colour, "query_colour": f.query_colour}
        return JSONResponse(jsonable_encoder(body)).body

    def now_json(f):  # what the server sends
        return search_json(f).body

    assert all(before_json(f) == now_json(f) for f in found), "the JSON bodies differ"
    rows["photo: JSON body, asdict + jsonable_encoder (before)"] = timed(before_json, found)
    rows["photo: JSON body, rendered from the dataclasses (now)"] = timed(now_json, found)
    rows["photo: search_image end to end"] = timed(lambda d: service.search_image(d, k=10), datas)

    rng = np.random.default_rng(0)
    ids = [int(i) for i in rng.integers(0, service.n_items, args.n)]
    rows["id: stored vector read"] = timed(lambda i: service.run.vectors([i]), ids)
    stored = [service.run.vectors([i])[0].astype(np.float32) for i in ids]
    # OpenMP's team size is per thread, and this one has searched already: the before row in a fresh thread
    before: dict = {}

    def searched_before():
        before["threads"] = faiss.omp_get_max_threads()
        before["row"] = timed(lambda v: service.run.index.search(v[None], 11), stored)

    fresh = threading.Thread(target=searched_before)
    fresh.start()
    fresh.join()
    rows[f"id: index search, faiss OpenMP {before['threads']} thread(s), the default (before)"] = before["row"]
    one_openmp_thread()
    rows["id: index search, faiss OpenMP 1 thread (now)"] = timed(lambda v: service.run.index.search(v[None], 11), stored)
    by_id = [service.neighbors_of(i, 10) for i in ids[:50]]
    rows["id: JSON body, asdict + jsonable_encoder (before)"] = timed(before_json, by_id)
    rows["id: JSON body, rendered from the dataclasses (now)"] = timed(now_json, by_id)
    rows["id: neighbors_of end to end"] = timed(lambda i: service.neighbors_of(i, 10), ids)

    print(f"\n| stage | median wall ms | mean CPU ms |\n|---|---|---|")
    for name, (wall, cpu) in rows.items():
        print(f"| {name} | {wall:.2f} | {cpu:.2f} |")
    print(f"\nload average before {load_before}, after {os.getloadavg()} on {os.cpu_count()} cores")
    if args.json:
        Path(args.json).write_text(json.dumps({k: [round(v, 3) for v in t] for k, t in rows.items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
