"""fashion.embedding: shapes, normalisation, bad images, crop, cache reuse and kill/resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fashion.embedding import Embedder, EmbeddingResult
from fashion.embedding.reader import ImageDataset
from fashion.resize import resize_center_crop

SIZE = 64


def _write_images(root: Path, n: int, seed: int = 0) -> list[str]:
    """n small JPEGs of different shapes and colours, plus nothing bad."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        w, h = int(rng.integers(40, 90)), int(rng.integers(40, 90))
        base = rng.integers(0, 255, size=3)
        pixels = np.clip(base + rng.normal(0, 40, size=(h, w, 3)), 0, 255).astype(np.uint8)
        path = root / f"img_{i:03d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(os.fspath(path))
    return paths


@pytest.fixture(scope="module")
def embedder():
    import torch

    torch.manual_seed(0)
    return Embedder.from_backbone("efficientnet_lite0", pretrained=False, size=SIZE)


@pytest.fixture()
def images(tmp_path):
    paths = _write_images(tmp_path / "img", 10)
    corrupt = tmp_path / "img" / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    empty = tmp_path / "img" / "empty.png"
    empty.write_bytes(b"")
    return paths[:5] + [os.fspath(corrupt)] + paths[5:] + [os.fspath(empty), os.fspath(tmp_path / "missing.jpg")]


def test_config_comes_from_backbone(embedder):
    from fashion.backbones import create_backbone

    _, cfg = create_backbone("efficientnet_lite0", pretrained=False)
    assert embedder.mean == tuple(cfg.mean) and embedder.std == tuple(cfg.std)
    assert embedder.size == SIZE and embedder.layer == "body"
    assert len(embedder.checksum) == 64 and embedder.dim == cfg.feature_dim
    assert embedder.describe()["checksum"] == embedder.checksum


def test_embed_shapes_norms_and_failures(embedder, images):
    result = embedder.embed(images, batch_size=4, num_workers=0, progress=False)
    assert isinstance(result, EmbeddingResult)
    assert result.vectors.dtype == np.float32 and result.vectors.shape == (len(images), embedder.dim)
    bad = {images[5], images[-2], images[-1]}
    assert result.ok.tolist() == [p not in bad for p in images]
    assert [p for p, _ in result.failures] == [images[5], images[-2], images[-1]]
    assert all(reason for _, reason in result.failures)
    norms = np.linalg.norm(result.vectors, axis=1)
    np.testing.assert_allclose(norms[result.ok], 1.0, atol=1e-5)
    assert np.all(result.vectors[~result.ok] == 0)
    assert result.n_computed == len(images) and result.n_cached == 0


def test_workers_give_the_same_vectors(embedder, images):
    a = embedder.embed(images, batch_size=4, num_workers=0, progress=False)
    b = embedder.embed(images, batch_size=4, num_workers=1, progress=False)
    np.testing.assert_array_equal(a.vectors, b.vectors)
    assert a.failures == b.failures


def test_worker_returns_flag_instead_of_raising(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"garbage")
    tensor, ok, reason, index = ImageDataset([os.fspath(bad)], None, 32)[0]
    assert not ok and reason and index == 0 and tuple(tensor.shape) == (3, 32, 32)


def test_resize_shorter_side_then_center_crop():
    img = Image.new("RGB", (200, 100), "red")
    img.paste((0, 0, 255), (0, 0, 50, 100))  # blue left quarter falls outside the centre crop
    out = resize_center_crop(img, 50)
    assert out.shape == (50, 50, 3) and out.dtype == np.uint8
    assert (out[..., 0] > 200).all()  # all red
    assert resize_center_crop(Image.new("RGB", (30, 90)), 64).shape == (64, 64, 3)  # upsampled


def test_bbox_crop_used_only_when_asked(embedder, tmp_path):
    import pandas as pd

    img = Image.new("RGB", (80, 80), "white")
    img.paste((200, 20, 20), (0, 0, 40, 80))
    path = tmp_path / "half.png"
    img.save(path)
    items = pd.DataFrame({"path": [os.fspath(path)] * 2, "bbox": [(0, 0, 40, 80), None]})
    cropped = embedder.embed(items, batch_size=2, num_workers=0, crop=True, progress=False).vectors
    plain = embedder.embed(items, batch_size=2, num_workers=0, crop=False, progress=False).vectors
    np.testing.assert_array_equal(plain[0], plain[1])
    assert not np.allclose(cropped[0], cropped[1])
    np.testing.assert_array_equal(cropped[1], plain[1])


def test_head_layer_needs_a_trained_model():
    with pytest.raises(ValueError, match="trained"):
        Embedder.create(arch="efficientnet_lite0", layer="head")
    with pytest.raises(ValueError, match="layer"):
        Embedder.create(arch="efficientnet_lite0", layer="neck")


def test_bf16_only_where_the_cpu_computes_in_it(monkeypatch):
    """precision="auto" picks bf16 only on a CPU with AVX512-BF16 or AMX: on AVX-512 without them
    (torch's own check says yes) bf16 is emulated, 3x slower than float32 in OpenVINO."""
    from fashion.embedding import net

    monkeypatch.setattr(net, "_cpu_flags", lambda: frozenset({"avx512f", "avx512bw", "avx512_vnni"}))
    assert not net.bf16_supported()
    monkeypatch.setattr(net, "_cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert net.bf16_supported()
    monkeypatch.setattr(net, "_cpu_flags", lambda: frozenset({"amx_tile", "amx_bf16"}))
    assert net.bf16_supported()


def test_bf16_close_to_fp32(embedder, images):
    from fashion.embedding import bf16_supported

    if not bf16_supported():
        pytest.skip("this CPU has no native bf16")
    fp32 = Embedder(embedder._body, name="x", size=SIZE, mean=embedder.mean, std=embedder.std,
                    checksum=embedder.checksum, precision="fp32")
    a = fp32.embed(images, batch_size=4, num_workers=0, progress=False).vectors
    b = embedder.embed(images, batch_size=4, num_workers=0, progress=False).vectors
    cos = (a * b).sum(1)[np.linalg.norm(a, axis=1) > 0]
    assert cos.min() > 0.98


def test_cache_is_reused_and_invalidated_by_mtime(embedder, images, tmp_path):
    cache = tmp_path / "cache"
    first = embedder.embed(images, batch_size=4, num_workers=0, cache_dir=cache, chunk_size=4, progress=False)
    chunks = sorted(embedder.cache_path(cache).glob("chunk_*.npz"))
    assert len(chunks) == 3  # 13 rows, 4 per chunk; the last holds only the missing file, never cached
    again = embedder.embed(images, batch_size=4, num_workers=0, cache_dir=cache, chunk_size=4, progress=False)
    assert again.n_cached == len(images) - 1 and again.n_computed == 1
    np.testing.assert_array_equal(first.vectors, again.vectors)
    assert again.failures == first.failures
    st = os.stat(images[0])
    os.utime(images[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000_000))
    third = embedder.embed(images, batch_size=4, num_workers=0, cache_dir=cache, progress=False)
    assert third.n_computed == 2
    np.testing.assert_array_equal(np.delete(first.vectors, 0, 0), np.delete(third.vectors, 0, 0))  # cached
    # row 0, recomputed in a batch of another size: bitwise in bf16, whose rounding absorbs the batch's;
    # in float32 (precision auto on a CPU without native bf16) oneDNN's kernels differ in the last bits
    if embedder.precision == "bf16":
        np.testing.assert_array_equal(first.vectors[0], third.vectors[0])
    else:
        np.testing.assert_allclose(first.vectors[0], third.vectors[0], rtol=0, atol=1e-6)



def _edge_embedder() -> Embedder:
    """A body that sees only edges (3x3 Laplacian, no padding, ReLU with a small threshold against
    rounding): a one-colour image gives exactly 0, as a pretrained body's ReLU6 does for a blank one."""
    import torch
    from torch import nn

    conv = nn.Conv2d(3, 2, 3)
    with torch.no_grad():
        lap = torch.tensor([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]])
        conv.weight.copy_(torch.stack([lap.expand(3, 3, 3), -lap.expand(3, 3, 3)]))
        conv.bias.fill_(-1e-3)
    return Embedder(nn.Sequential(conv, nn.ReLU()), name="edges", size=16, mean=(0.5,) * 3, std=(0.5,) * 3,
                    checksum="e" * 64, precision="fp32")


def test_blank_image_is_a_failure_also_from_the_cache(tmp_path):
    """An all-zero vector (blank image) has no direction: ok=False with a reason, listed like an
    unreadable image; a rerun served from the cache (which stored the zero vector) agrees."""
    from fashion.embedding import NO_FEATURES

    paths = _write_images(tmp_path / "img", 2)
    Image.new("RGB", (30, 20), "white").save(tmp_path / "img" / "white.png")
    Image.new("L", (20, 30), 128).save(tmp_path / "img" / "grey.jpg")
    paths[1:1] = [os.fspath(tmp_path / "img" / "white.png"), os.fspath(tmp_path / "img" / "grey.jpg")]
    embedder = _edge_embedder()
    first = embedder.embed(paths, batch_size=3, num_workers=0, cache_dir=tmp_path / "cache", progress=False)
    again = embedder.embed(paths, batch_size=3, num_workers=0, cache_dir=tmp_path / "cache", progress=False)
    assert again.n_cached == len(paths) and again.n_computed == 0
    for result in (first, again):
        assert result.ok.tolist() == [True, False, False, True]
        assert result.failures == [(paths[1], NO_FEATURES), (paths[2], NO_FEATURES)]
        assert np.all(result.vectors[~result.ok] == 0)
        np.testing.assert_allclose(np.linalg.norm(result.vectors[result.ok], axis=1), 1.0, atol=1e-5)
    assert first.vectors.tobytes() == again.vectors.tobytes()


def test_non_finite_vector_is_a_failure():
    from fashion.embedding import NO_FEATURES, NON_FINITE
    from fashion.embedding.embedder import reject_featureless

    vectors = np.array([[0.6, 0.8], [np.nan, 0.0], [0.0, 0.0], [np.inf, 0.0], [0.0, 0.0]], dtype=np.float32)
    ok = np.array([True, True, True, True, False])
    reasons = ["", "", "", "", "unreadable"]
    reject_featureless(vectors, ok, reasons)
    assert ok.tolist() == [True, False, False, False, False]
    assert reasons == ["", NON_FINITE, NO_FEATURES, NON_FINITE, "unreadable"]
    assert np.all(vectors[1:] == 0) and vectors[0].tolist() == [0.6000000238418579, 0.800000011920929]

_CHILD = """
import sys, time, torch
torch.manual_seed(0)
torch.set_num_threads(1)  # as the parent: float32 rows depend on the thread count
from fashion.embedding import Embedder
paths = sys.argv[2:]
embedder = Embedder.from_backbone("efficientnet_lite0", pretrained=False, size={size})
forward = embedder.forward
def slow_forward(images):
    time.sleep(0.4)  # slow enough for the parent to kill us half-way
    return forward(images)
embedder.forward = slow_forward
embedder.embed(paths, batch_size=4, num_workers=0, cache_dir=sys.argv[1], chunk_size=4, progress=False)
print("finished")
"""


def test_killed_run_resumes_bitwise(tmp_path):
    import torch

    paths = _write_images(tmp_path / "img", 24, seed=1)
    cache = tmp_path / "cache"
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(_CHILD.format(size=SIZE)))
    child = subprocess.Popen([sys.executable, os.fspath(script), os.fspath(cache), *paths],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(cache.glob("*/chunk_*.npz"))) < 2:
        assert child.poll() is None, child.stderr.read().decode()
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    written = len(list(cache.glob("*/chunk_*.npz")))
    assert 2 <= written < 6, "the child should have been killed half-way"

    torch.manual_seed(0)
    embedder = Embedder.from_backbone("efficientnet_lite0", pretrained=False, size=SIZE)
    assert embedder.cache_path(cache).is_dir()  # same weights → same cache directory
    # one thread, as the child: in float32 (precision auto on a CPU without native bf16) oneDNN's split of
    # a reduction over threads changes the last bits (1.3e-7 between 1 and 2 threads), and an earlier test
    # of the same process may have changed torch's thread count
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        resumed = embedder.embed(paths, batch_size=4, num_workers=0, cache_dir=cache, chunk_size=4, progress=False)
        assert resumed.n_cached == 4 * written and resumed.n_computed == len(paths) - 4 * written
        fresh = embedder.embed(paths, batch_size=4, num_workers=0, cache_dir=tmp_path / "fresh", chunk_size=4,
                               progress=False)
    finally:
        torch.set_num_threads(threads)
    assert fresh.n_computed == len(paths)
    np.testing.assert_array_equal(resumed.vectors, fresh.vectors)
    assert resumed.vectors.tobytes() == fresh.vectors.tobytes()


@pytest.mark.parametrize("arch", ["efficientnet_lite0", "resnet18"])
def test_fold_batchnorm_keeps_outputs(arch):
    import copy

    import torch

    from fashion.backbones import create_backbone
    from fashion.embedding import fold_batchnorm

    torch.manual_seed(0)
    body, _ = create_backbone(arch, pretrained=False)
    for m in body.modules():  # non-trivial statistics, as after training
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    body.eval()
    folded = copy.deepcopy(body)
    n = fold_batchnorm(folded)
    assert n > 10 and not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        a, b = body(x), folded(x)
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * float(a.abs().max()))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A `fashion train`-style output directory with random weights (fashion.modelio's format)."""
    import torch

    from fashion.modelio import ModelInfo, build_classifier, export_model

    torch.manual_seed(0)
    model, cfg = build_classifier("efficientnet_lite0", 3, pretrained=False)
    directory = tmp_path_factory.mktemp("model")
    export_model(directory, model.eval(), ModelInfo(arch="efficientnet_lite0", classes=("a", "b", "c"), size=48,
                                                    final_size=SIZE, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.4),
                                                    crop="bbox"))
    return directory


def test_trained_model_body_and_head(model_dir, images):
    from fashion.rundir import file_sha256

    body = Embedder.create(model=model_dir, layer="body")
    head = Embedder.create(model=model_dir, layer="head")
    assert Embedder.create(model=model_dir).layer == "head"  # auto: a trained head retrieves better
    assert Embedder.create(arch="efficientnet_lite0", pretrained=False).layer == "body"
    assert body.size == SIZE and body.mean == (0.4, 0.5, 0.6) and body.std == (0.2, 0.3, 0.4)
    assert body.checksum == head.checksum == file_sha256(model_dir / "model.safetensors")
    assert body.crop and body.resize == "squish" and body.model_dir == os.fspath(model_dir.resolve())
    assert body.dim == 1280 and head.dim == 512  # pooled body map vs the head's penultimate Linear
    result = head.embed(images, batch_size=4, num_workers=0, progress=False)
    np.testing.assert_allclose(np.linalg.norm(result.vectors[result.ok], axis=1), 1.0, atol=1e-5)
    assert head.describe()["layer"] == "head"
    with pytest.raises(FileNotFoundError):
        Embedder.create(model=model_dir / "nope")


# ------------------------------------------------------------------------------------------ runtimes


@pytest.mark.parametrize("layer", ["body", "head"])
def test_openvino_runtime_computes_the_torch_function(model_dir, images, layer):
    """Same module, two runtimes: in fp32 the vectors agree to rounding (normalisation, pooling, head)."""
    pytest.importorskip("openvino")
    torch_e = Embedder.create(model=model_dir, layer=layer, precision="fp32", runtime="torch")
    ov_e = Embedder.create(model=model_dir, layer=layer, precision="fp32", runtime="openvino")
    a = torch_e.embed(images, batch_size=4, num_workers=0, progress=False)
    b = ov_e.embed(images, batch_size=4, num_workers=0, progress=False)
    assert ov_e.runtime == "openvino" and ov_e.describe()["runtime"] == "openvino"
    assert a.ok.tolist() == b.ok.tolist() and b.vectors.shape == a.vectors.shape
    np.testing.assert_allclose(b.vectors, a.vectors, atol=2e-4)
    np.testing.assert_allclose(np.linalg.norm(b.vectors[b.ok], axis=1), 1.0, atol=1e-5)


def test_openvino_rows_do_not_depend_on_their_batch(embedder, images):
    """Resumed runs must be bitwise equal: a row's vector is the same whatever batch it is computed in."""
    pytest.importorskip("openvino")
    ov_e = Embedder.from_backbone("efficientnet_lite0", pretrained=False, size=SIZE, runtime="openvino")
    ov_e._body = embedder._body  # the module fixture's random weights
    whole = ov_e.embed(images, batch_size=16, num_workers=0, progress=False).vectors
    pieces = ov_e.embed(images, batch_size=3, num_workers=0, progress=False).vectors
    assert np.array_equal(whole, pieces)


def test_auto_runtime_depends_on_the_job_size(monkeypatch, images):
    from fashion.embedding import embedder, net

    monkeypatch.setattr(net, "openvino_available", lambda: True)
    monkeypatch.setattr(embedder, "OPENVINO_MIN_IMAGES", 100)
    small = Embedder.from_backbone("efficientnet_lite0", pretrained=False, size=SIZE)
    assert small.runtime == "auto" and small.resolve_runtime(99) == "torch"
    assert small.resolve_runtime(10_000) == "torch"  # resolved once, kept: one runtime per embedder
    big = Embedder.from_backbone("efficientnet_lite0", pretrained=False, size=SIZE)
    assert big.resolve_runtime(100) == "openvino"
    assert big.cache_path("c").name != small.cache_path("c").name  # vectors of two runtimes never mix
    assert small.cache_path("c").name.endswith("-bf16-crop") or small.cache_path("c").name.endswith("-fp32-crop")
    monkeypatch.setattr(net, "openvino_available", lambda: False)
    assert Embedder.from_backbone("efficientnet_lite0", pretrained=False, size=SIZE).resolve_runtime(10**6) == "torch"


def test_unknown_or_missing_runtime_is_a_clear_error(monkeypatch):
    from fashion.embedding import net

    with pytest.raises(ValueError, match="runtime must be one of"):
        Embedder.from_backbone("efficientnet_lite0", pretrained=False, runtime="tensorrt")
    monkeypatch.setattr(net, "openvino_available", lambda: False)
    with pytest.raises(ValueError, match="pip install openvino"):
        Embedder.from_backbone("efficientnet_lite0", pretrained=False, runtime="openvino")


def test_cached_openvino_run_converts_nothing(images, tmp_path):
    """A rerun served from the cache (and describe(), which needs d) never converts the network."""
    pytest.importorskip("openvino")
    first = Embedder.from_backbone("efficientnet_lite0", pretrained=False, size=SIZE, runtime="openvino")
    computed = first.embed(images, batch_size=4, cache_dir=tmp_path, num_workers=0, progress=False)
    again = Embedder.from_backbone("efficientnet_lite0", pretrained=False, size=SIZE, runtime="openvino")
    again._body = first._body  # same weights (the random init differs per instance)
    again.checksum = first.checksum
    cached = again.embed(images, batch_size=4, cache_dir=tmp_path, num_workers=0, progress=False)
    assert cached.n_cached == len(images) - 1  # all but the missing file, which has no cache key
    assert np.array_equal(cached.vectors, computed.vectors)
    assert again.describe()["dim"] == 1280 and again._openvino is None


def test_openvino_runtimes_released_in_creation_order_leave_a_usable_signal_stack():
    """Each OpenVINO CPU plugin swaps in a signal stack of its own and unmaps it when destroyed; two
    released first-made-first left this thread on an unmapped stack, and the next handled signal (the
    DataLoader's SIGCHLD in test_killed_run_resumes_bitwise) was a SIGSEGV with no traceback."""
    import gc

    import torch

    from fashion.embedding import sigstack

    pytest.importorskip("openvino")
    if sigstack.current() is None:
        pytest.skip("sigaltstack is read on Linux only")
    pixels = torch.zeros((2, 3, SIZE, SIZE), dtype=torch.uint8)
    first = Embedder.from_backbone("efficientnet_lite0", pretrained=False, size=SIZE, runtime="openvino")
    first.forward(pixels)
    second = Embedder.from_backbone("efficientnet_lite0", pretrained=False, size=SIZE, runtime="openvino")
    second.forward(pixels)
    del first
    gc.collect()
    del second
    gc.collect()
    assert sigstack.usable(), f"this thread's signal stack {sigstack.current()} is not mapped"
    received = []
    old = signal.signal(signal.SIGUSR1, lambda *_: received.append(True))  # delivered on that stack
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        for _ in range(100):
            if received:
                break
            time.sleep(0.01)
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert received


@pytest.mark.parametrize("runtime", ["torch", "openvino"])
@pytest.mark.parametrize("layer", ["body", "head"])
def test_classify_gives_the_vectors_and_the_classifiers_prediction_in_one_pass(model_dir, images, layer, runtime):
    """The service's one pass: the vectors of ``forward`` and the probabilities of the classifier's own
    ``predict`` (which runs the body a second time on its own resize), from one run of the body."""
    import torch

    from fashion.errors import ConfigError
    from fashion.images import open_image
    from fashion.resize import resize_image
    from fashion.modelio import load_model

    if runtime == "openvino":
        pytest.importorskip("openvino")
    emb = Embedder.create(model=model_dir, layer=layer, precision="fp32", runtime=runtime)
    assert emb.can_classify and emb.class_names == ("a", "b", "c")
    pictures = [open_image(p) for p in images if "img_" in p]  # the good ones
    batch = torch.from_numpy(np.stack([resize_image(p, emb.size, "squish") for p in pictures])).permute(0, 3, 1, 2)
    vectors, probs = emb.classify(batch)
    np.testing.assert_allclose(vectors.numpy(), emb.forward(batch).numpy(), atol=1e-6)
    np.testing.assert_allclose(probs.numpy(), load_model(model_dir).predict(pictures).numpy(), atol=1e-4)
    assert probs.shape == (len(pictures), 3) and probs.dtype == torch.float32
    # no one-pass prediction where it would not be the classifier's: another size, no trained model
    other = Embedder.create(model=model_dir, layer=layer, size=32, precision="fp32", runtime="torch")
    bare = Embedder.from_backbone("efficientnet_lite0", pretrained=False, size=SIZE)
    for no in (other, bare):
        assert not no.can_classify and no.class_names == ()
        with pytest.raises(ConfigError, match="no one-pass classifier"):
            no.classify(batch)
