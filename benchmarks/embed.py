"""Embedding speed: the project's path vs a naive fp32 loop vs the compute floor (issue 6, item 4).

    python benchmarks/embed.py                 # 768 images of clothing-dataset-small, batch 64, 224 px
    python benchmarks/embed.py --quick         # 192 images, fewer repeats
    python benchmarks/embed.py --limit 2000 --batch-size 32 --profile

Measured in one run, on the same images (a seeded sample over all splits of clothing-dataset-small):

- naive:   a plain fp32 PyTorch loop: decode + Pillow resize in the main process, NCHW float32, no workers.
- project: ``fashion.embedding.Embedder.embed`` with each runtime: DataLoader workers ship uint8;
  torch: BatchNorm folded into the convolutions, channels-last, bf16 autocast where the CPU has native
  bf16; openvino (when installed): the same module converted by OpenVINO (bf16 where native), the
  conversion (~2 s, once per process) counted in its time; openvino-int8 (when NNCF is installed):
  the body quantised to int8, calibration on the bundled sample counted in its time, and again as a
  rerun pays it ("cached network": the quantised network read from the cache directory).
- network only: the forward pass alone on a pre-decoded batch (fp32 NCHW / channels-last / bf16+CL,
  and the project's forward with BatchNorm folded).
- decode: decode alone, + Pillow resize + crop (the naive path's), + the project's resize + crop (torch's
  uint8 antialiased bilinear kernel), per image in one process.
- floor: model GFLOP per image (``torch.utils.flop_counter.FlopCounterMode``) ÷ the GFLOP/s of a large
  fp32 and bf16 matrix product measured now.

Retrieval precision@10 (all-pairs, cosine, labels = class folders) is computed from both paths'
vectors: reduced precision must not cost quality (|Δ| ≤ 0.005). ``--retrieval`` adds the protocol of
benchmarks/retrieval_clothing.py on the whole dataset: the test photos as queries against a gallery
of train + validation, P@10 for the naive path and each runtime (not timed). ``--profile`` prints the top
functions of cProfile over the project path and the top operators of torch.profiler over its forward.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("FASHION_BENCH_DATA", "/work/shared/data/clothing-dataset-small"))
INT8_CACHED = "openvino-int8, cached network"  # the int8 runtime with its quantised network read from the cache


def sample_images(root: Path, limit: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """(paths, labels) of ``limit`` JPEGs drawn with ``seed`` from ``root/<split>/<class>/*.jpg``."""
    files = sorted(p for p in root.glob("*/*/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not files:
        sys.exit(f"no images under {root} (set FASHION_BENCH_DATA)")
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(files), size=min(limit, len(files)), replace=False))
    return [os.fspath(files[i]) for i in pick], np.array([files[i].parent.name for i in pick])


def precision_at_10(vectors: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """All-pairs cosine precision@k, each image leaving itself out."""
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    top = np.argpartition(-sims, k, axis=1)[:, :k]
    return float((labels[top] == labels[:, None]).mean())


def pillow_resize_center_crop(image, size: int) -> np.ndarray:
    """What a plain pipeline does (torchvision's ``Resize(size)`` + ``CenterCrop(size)`` on a PIL image):
    Pillow bilinear resize of the shorter side, then the central square. The project's resize gives the
    same pixels within one grey level (tests/test_images.py), faster (the decode rows of the table)."""
    from PIL import Image

    w, h = image.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    image = image.resize((nw, nh), Image.Resampling.BILINEAR)
    left, top = (nw - size) // 2, (nh - size) // 2
    return np.array(image.crop((left, top, left + size, top + size)), dtype=np.uint8)


def naive_embed(body, cfg, paths: list[str], size: int, batch_size: int) -> np.ndarray:
    """The plain loop: decode + Pillow resize in the main process, fp32 NCHW, no workers, default threads."""
    import torch

    from fashion.images import open_image

    mean = torch.tensor(cfg.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std).view(1, 3, 1, 1)
    out = []
    body.eval()
    with torch.no_grad():
        for start in range(0, len(paths), batch_size):
            batch = [pillow_resize_center_crop(open_image(p), size) for p in paths[start:start + batch_size]]
            x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float() / 255.0
            feats = body((x - mean) / std).mean(dim=(2, 3))
            out.append(torch.nn.functional.normalize(feats, dim=1).numpy())
    return np.concatenate(out)


def gemm_gflops(dtype, n: int = 2048, repeats: int = 5) -> float:
    """Best GFLOP/s of an n×n×n matrix product in ``dtype`` (2·n³ FLOP)."""
    import torch

    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)  # warm-up (oneDNN/MKL kernel selection)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def model_gflop_per_image(body, size: int) -> float:
    """Forward FLOP of one image (convolutions and matrix products), in GFLOP."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        body(torch.zeros(1, 3, size, size))
    return counter.get_total_flops() / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def network_only(body, size: int, batch_size: int, repeats: int) -> dict[str, float]:
    """img/s of the forward pass alone for fp32 NCHW, fp32 channels-last and bf16 + channels-last."""
    import copy

    import torch

    x = torch.randn(batch_size, 3, size, size)
    results = {}
    for name, cl, bf16 in (("fp32 NCHW", False, False), ("fp32 channels-last", True, False),
                           ("bf16 + channels-last", True, True)):
        net = copy.deepcopy(body).eval()
        xx = x
        if cl:
            net = net.to(memory_format=torch.channels_last)
            xx = x.contiguous(memory_format=torch.channels_last)
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else torch.autocast("cpu", enabled=False)

        def step():
            with torch.inference_mode(), ctx:
                net(xx)

        step()  # warm-up
        results[name] = batch_size / min(_timed(step) for _ in range(repeats))
    return results


def decode_rate(paths: list[str], size: int) -> tuple[float, float, float]:
    """img/s in one process of open_image alone, + Pillow resize + crop, + the project's resize + crop."""
    from fashion.images import open_image
    from fashion.resize import resize_center_crop

    t_open = _timed(lambda: [open_image(p) for p in paths])
    t_pillow = _timed(lambda: [pillow_resize_center_crop(open_image(p), size) for p in paths])
    t_project = _timed(lambda: [resize_center_crop(open_image(p), size) for p in paths])
    return len(paths) / t_open, len(paths) / t_pillow, len(paths) / t_project


def profile_project(embedder, paths, batch_size: int, size: int) -> None:
    """cProfile of the project path (main process) and torch.profiler of one forward pass."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    prof = cProfile.Profile()
    prof.enable()
    embedder.embed(paths, batch_size=batch_size, progress=False)
    prof.disable()
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(15)
    print("\n### cProfile, project path (main process, cumulative)\n```\n" + text.getvalue().strip() + "\n```")
    x = torch.zeros((batch_size, 3, size, size), dtype=torch.uint8)
    embedder.forward(x)
    with profile(activities=[ProfilerActivity.CPU]) as p:
        embedder.forward(x)
    print("\n### torch.profiler, one project forward pass\n```\n"
          + p.key_averages().table(sort_by="self_cpu_time_total", row_limit=12) + "\n```")


def _label(runtime: str) -> str:
    if runtime == INT8_CACHED:
        return "openvino-int8 runtime, quantised network read from the cache"
    return f"{runtime} runtime"


def test_vs_train_precision(vectors: np.ndarray, splits: np.ndarray, labels: np.ndarray, k: int = 10) -> float:
    """P@k of the test photos as queries against a gallery of train + validation (cosine), the protocol
    of benchmarks/retrieval_clothing.py."""
    from fashion.metrics import precision_at_k
    from fashion.neighbors import build_index

    query, gallery = splits == "test", splits != "test"
    _, idx = build_index("exact", "cosine").fit(vectors[gallery]).kneighbors(vectors[query], k)
    return precision_at_k(labels[query], labels[gallery][idx], k)


def retrieval_table(args, runtimes, naive_body, cfg, int8_cache: Path) -> None:
    """The whole dataset embedded by the naive path and each runtime; P@10 test vs train + validation."""
    from fashion.embedding import Embedder

    paths, labels = sample_images(DATA, 10**9)
    splits = np.array([Path(p).parent.parent.name for p in paths])
    rows = {"naive: plain fp32 loop": naive_embed(naive_body, cfg, paths, args.size, args.batch_size)}
    for runtime in runtimes:
        embedder = Embedder.from_backbone(args.arch, size=args.size, runtime=runtime)
        rows[f"project: {runtime} runtime ({embedder.precision})"] = embedder.embed(
            paths, batch_size=args.batch_size, progress=False,
            cache_dir=int8_cache if runtime == "openvino-int8" else None).vectors
    base = None
    print(f"\n| {len(paths)} photos: {int((splits == 'test').sum())} test queries, "
          f"{int((splits != 'test').sum())} train + validation gallery | P@10 | Δ vs naive |")
    print("|---|---:|---:|")
    for name, vectors in rows.items():
        p10 = test_vs_train_precision(vectors, splits, labels)
        base = p10 if base is None else base
        print(f"| {name} | {p10:.4f} | {p10 - base:+.4f} |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=768, help="images to embed")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--arch", default="efficientnet_lite0")
    parser.add_argument("--workers", type=int, default=None, help="project path DataLoader workers (default: auto)")
    parser.add_argument("--runtimes", nargs="+", default=None, choices=("torch", "openvino", "openvino-int8"),
                        help="project runtimes to time (default: torch, and openvino / openvino-int8 when installed)")
    parser.add_argument("--retrieval", action="store_true",
                        help="also P@10 of test queries against train + validation over the whole dataset")
    parser.add_argument("--quick", action="store_true", help="192 images, fewer repeats")
    parser.add_argument("--profile", action="store_true", help="print cProfile and torch.profiler tables")
    args = parser.parse_args(argv)
    if args.quick:
        args.limit = min(args.limit, 192)
    repeats = 2 if args.quick else 4

    import torch

    from fashion.backbones import create_backbone
    from fashion.embedding import Embedder, bf16_supported, default_num_workers, int8, openvino_available

    paths, labels = sample_images(DATA, args.limit)
    n = len(paths)
    workers = default_num_workers() if args.workers is None else args.workers
    print(f"# embed benchmark: {n} images of {DATA.name}, {args.arch} at {args.size} px, batch {args.batch_size}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
          f"torch {torch.__version__}, {torch.get_num_threads()} torch threads, native bf16: {bf16_supported()}, "
          f"project workers: {workers}")

    runtimes = args.runtimes or (["torch"] + (["openvino"] if openvino_available() else [])
                                 + (["openvino-int8"] if openvino_available() and int8.nncf_available() else []))
    paths_timed = runtimes + ([INT8_CACHED] if "openvino-int8" in runtimes else [])
    int8_cache = Path(tempfile.mkdtemp(prefix="embed-bench-int8-"))  # the cached row's quantised network
    naive_body, cfg = create_backbone(args.arch)
    naive_embed(naive_body, cfg, paths[: min(len(paths), args.batch_size)], args.size, args.batch_size)  # warm-up

    def project(runtime):
        """A fresh embedder each time. torch is warmed up (oneDNN picks its kernels on the first batch,
        as the naive path's warm-up); OpenVINO is not: its one-off conversion counts in its time."""
        embedder = Embedder.from_backbone(args.arch, size=args.size,
                                          runtime="openvino-int8" if runtime == INT8_CACHED else runtime)
        if runtime == INT8_CACHED:  # calibrated once before the timed runs; only the vectors are cleared
            if not list(int8_cache.rglob(int8.MODEL_FILE)):
                embedder.embed(paths[: args.batch_size], batch_size=args.batch_size, cache_dir=int8_cache,
                               num_workers=0, progress=False)
            for chunk in int8_cache.rglob("chunk_*.npz"):
                chunk.unlink()
        if runtime == "torch":
            embedder.embed(paths[: args.batch_size], batch_size=args.batch_size, num_workers=0, progress=False)
        return embedder

    # alternate the paths and keep each one's best time: loads on a shared machine come and go
    t_naive, t_project, vectors, embedders = float("inf"), {}, {}, {}
    for _ in range(1 if args.quick else 2):
        t0 = time.perf_counter()
        naive_vectors = naive_embed(naive_body, cfg, paths, args.size, args.batch_size)
        t_naive = min(t_naive, time.perf_counter() - t0)
        for runtime in paths_timed:
            embedder = embedders[runtime] = project(runtime)
            t0 = time.perf_counter()
            vectors[runtime] = embedder.embed(paths, batch_size=args.batch_size, num_workers=workers, progress=False,
                                              cache_dir=int8_cache if runtime == INT8_CACHED else None).vectors
            t_project[runtime] = min(t_project.get(runtime, float("inf")), time.perf_counter() - t0)
    p_naive = precision_at_10(naive_vectors, labels)

    rate_open, rate_pillow, rate_project = decode_rate(paths[:min(n, 128)], args.size)
    net = network_only(naive_body, args.size, args.batch_size, repeats)
    gflop = model_gflop_per_image(naive_body, args.size)
    fp32_gemm, bf16_gemm = gemm_gflops(torch.float32), gemm_gflops(torch.bfloat16)

    print("\n| path | img/s | × naive | precision@10 |")
    print("|---|---:|---:|---:|")
    print(f"| naive: plain fp32 loop, NCHW, decode + Pillow resize in main process | {n / t_naive:.1f} | 1.00 | {p_naive:.4f} |")
    for runtime in paths_timed:
        p_project = precision_at_10(vectors[runtime], labels)
        print(f"| project: Embedder.embed, {_label(runtime)} ({embedders[runtime].precision}, {workers} workers) | "
              f"{n / t_project[runtime]:.1f} | {t_naive / t_project[runtime]:.2f} | {p_project:.4f} |")
    for runtime in paths_timed:
        cosine = (naive_vectors * vectors[runtime]).sum(1)
        print(f"\n{runtime}: precision@10 difference {precision_at_10(vectors[runtime], labels) - p_naive:+.4f} "
              f"(must be within ±0.005); cosine(naive, project) per image: min {cosine.min():.4f}, "
              f"mean {cosine.mean():.4f}")
    print("\n| stage alone | img/s |")
    print("|---|---:|")
    print(f"| decode (open_image) | {rate_open:.1f} |")
    print(f"| decode + Pillow resize + center crop (naive) | {rate_pillow:.1f} |")
    print(f"| decode + project resize + center crop (torch uint8 kernel) | {rate_project:.1f} |")
    x = torch.zeros((args.batch_size, 3, args.size, args.size), dtype=torch.uint8)
    for runtime in runtimes:
        embedder = embedders[runtime]
        net[f"project forward, {runtime} runtime ({embedder.precision}"
            + (", BN folded, channels-last)" if runtime == "torch" else ")")] = args.batch_size / min(
            _timed(lambda: embedder.forward(x)) for _ in range(repeats))
    for name, rate in net.items():
        print(f"| network only, {name} | {rate:.1f} |")
    best = min(runtimes, key=lambda r: t_project[r])
    floor = (bf16_gemm if embedders[best].precision == "bf16" else fp32_gemm) / gflop
    print(f"\ncompute floor: {gflop:.3f} GFLOP/image; gemm {fp32_gemm:.0f} GFLOP/s fp32, {bf16_gemm:.0f} GFLOP/s "
          f"bf16 → floor {fp32_gemm / gflop:.0f} img/s fp32, {bf16_gemm / gflop:.0f} img/s bf16; fastest project "
          f"path ({best}) at {100 * (n / t_project[best]) / floor:.0f}% of its floor")
    embedder = embedders[best]
    if args.retrieval:
        retrieval_table(args, runtimes, naive_body, cfg, int8_cache)
    if args.profile:
        profile_project(embedder, paths[: min(n, 4 * args.batch_size)], args.batch_size, args.size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
