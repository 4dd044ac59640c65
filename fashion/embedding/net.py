"""The embedding network and its two runtimes (this module imports torch: import it lazily).

:class:`EmbeddingNet` is the one function both runtimes compute: uint8 (N, 3, S, S) RGB →
normalise with the model's mean/std → body → pooled body features or the trained head's penultimate
features → L2-normalised float32 (N, d).

- :class:`TorchRuntime`: BatchNorm folded into the convolutions (:func:`fold_batchnorm`),
  channels-last memory format and, with ``precision="bf16"``, bf16 autocast.
- :class:`OpenVINORuntime`: the same module converted once by OpenVINO, which fuses the graph and
  uses bf16 where ``precision`` says. Its outputs do not depend on the batch a row is in. With the
  body quantised to int8 (:mod:`.int8`) it is the ``openvino-int8`` runtime. Every OpenVINO runtime
  of the process compiles on the one Core of :func:`openvino_core` (why: :mod:`.sigstack`).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import time
import warnings

import numpy as np
import torch
from torch import nn

from .ovcore import openvino_available, openvino_core  # noqa: F401  (their home before .ovcore)

log = logging.getLogger("fashion.embedding")


NATIVE_BF16 = frozenset({"avx512_bf16", "amx_bf16"})  # /proc/cpuinfo flags of a CPU that computes in bf16


def bf16_supported() -> bool:
    """True when this CPU runs bf16 matrix products natively (oneDNN with AVX512-BF16 or AMX).

    torch's own check (``_is_mkldnn_bf16_supported``) is also true on AVX-512 without either, where
    oneDNN and OpenVINO only emulate bf16: on such an Intel Xeon OpenVINO's bf16 network took 36-40 ms
    of CPU a photo against 12.5-13.5 ms in float32 (benchmarks/README.md, "photo and id queries near
    the floor"). So where the CPU's flags can be read (Linux), they decide; elsewhere torch's check."""
    flags = _cpu_flags()
    if flags is not None:
        return bool(flags & NATIVE_BF16)
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _cpu_flags() -> frozenset | None:
    """The first CPU's feature flags from /proc/cpuinfo, or None where there is none (not Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        return None
    return None


def state_dict_sha256(module: nn.Module) -> str:
    """sha256 over the names, dtypes, shapes and bytes of a module's state dict (sorted by name)."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def fold_batchnorm(module: nn.Module, size: int = 64) -> int:
    """Fold every eval-mode BatchNorm that directly follows a convolution into it, in place.

    Inference only: ``bn(conv(x)) == conv'(x)`` with ``w' = w·γ/√(var+ε)``, ``b' = (b−μ)·γ/√(var+ε)+β``.
    Pairs are found by running one dummy (1, 3, size, size) batch and matching each BatchNorm's input
    tensor to the output of the convolution that produced it, so any architecture works. A timm
    ``BatchNormAct2d`` keeps its activation (and dropout); a plain BatchNorm becomes ``nn.Identity``.
    Returns the number of folded pairs.
    """
    produced: dict[int, nn.Conv2d] = {}
    pairs: list[tuple[str, nn.Conv2d, nn.BatchNorm2d]] = []
    names = {m: n for n, m in module.named_modules()}

    def after_conv(conv, _inputs, output):
        produced[id(output)] = conv

    def before_bn(bn, inputs):
        conv = produced.get(id(inputs[0]))
        if conv is not None and conv.out_channels == bn.num_features:
            pairs.append((names[bn], conv, bn))

    hooks = []
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(after_conv))
        elif isinstance(m, nn.BatchNorm2d) and m.track_running_stats and m.affine:
            hooks.append(m.register_forward_pre_hook(before_bn))
    try:
        module.eval()
        with torch.inference_mode():
            module(torch.zeros(1, 3, size, size))
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad():
        for name, conv, bn in pairs:
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            conv.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
            conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
            rest = [m for m in (getattr(bn, "drop", None), getattr(bn, "act", None)) if m is not None]
            parent_name, _, attr = name.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            setattr(parent, attr, nn.Sequential(*rest) if rest else nn.Identity())
    return len(pairs)


class EmbeddingNet(nn.Module):
    """uint8 (N, 3, S, S) → L2-normalised float32 (N, d): normalise, body, pool (or head), normalise.

    head: None for pooled body features, else a module mapping the feature map to (N, d') (the trained
    head's penultimate layers). mean/std: 3 floats each, on the [0, 1] scale. classes: None, or the
    trained classifier's last part — its whole head (applied to the feature map) when ``head`` is None,
    else its last layer (applied to ``head``'s features) — and forward then returns the vectors and the
    class probabilities (N, c) of the same pass: the body runs once for both.
    """

    def __init__(self, body: nn.Module, head: nn.Module | None, mean, std, classes: nn.Module | None = None):
        super().__init__()
        self.body, self.head, self.classes = body, head, classes
        self.register_buffer("shift", torch.tensor(mean).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("scale", torch.tensor(std).view(1, 3, 1, 1) * 255.0)

    def forward(self, images):
        x = ((images.float() - self.shift) / self.scale).contiguous(memory_format=torch.channels_last)
        fmap = self.body(x)
        feats = fmap.float().mean(dim=(2, 3)) if self.head is None else self.head(fmap)
        vectors = feats.float()  # the pooled sum and the norm in float32, also under autocast
        vectors = vectors / vectors.norm(dim=1, keepdim=True).clamp_min(1e-12)
        if self.classes is None:
            return vectors
        logits = self.classes(fmap if self.head is None else feats)
        return vectors, torch.softmax(logits.float(), dim=1)


def build_net(body: nn.Module, head: nn.Module | None, mean, std, size: int, name: str = "",
              classes: nn.Module | None = None) -> EmbeddingNet:
    """An :class:`EmbeddingNet` over a private, BatchNorm-folded, channels-last copy of ``body``
    (the caller's module, e.g. a trained classifier's body, stays untouched)."""
    body = copy.deepcopy(body).eval()
    folded = fold_batchnorm(body, size=min(size, 64))
    # channels-last lets oneDNN pick its fastest convolution kernels
    body = body.to(memory_format=torch.channels_last)
    log.debug("%s: folded %d BatchNorms into convolutions", name, folded)
    return EmbeddingNet(body, head, mean, std, classes).eval()


class TorchRuntime:
    """Runs an :class:`EmbeddingNet` eagerly, under bf16 autocast when ``precision == "bf16"``."""

    name = "torch"

    def __init__(self, net: EmbeddingNet, precision: str):
        self.net, self.precision = net, precision

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if self.precision == "bf16"
                    else contextlib.nullcontext())
        with torch.inference_mode(), autocast:
            return self.net(images)


class OpenVINORuntime:
    """An :class:`EmbeddingNet` converted and compiled by OpenVINO (conversion happens here, once).

    transform: an optional function of the converted ``openvino.Model`` returning the model to compile
    (``runtime="openvino-int8"``: :func:`fashion.embedding.int8.quantized_model`).
    """

    name = "openvino"

    def __init__(self, net: EmbeddingNet, size: int, precision: str, label: str = "", transform=None):
        import openvino as ov

        example = torch.zeros((2, 3, size, size), dtype=torch.uint8)
        start = time.perf_counter()
        with warnings.catch_warnings():  # tracing warnings (torch.jit) say nothing to the user
            warnings.simplefilter("ignore")
            model = ov.convert_model(net, example_input=example, input=[(-1, 3, size, size)])
        if transform is not None:
            model = transform(model)
        self.model = model  # the converted network, as compiled (fashion.embedding.ir saves it)
        self.compiled = openvino_core().compile_model(model, "CPU", {
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": torch.get_num_threads()})
        log.info("%s: converted to OpenVINO in %.1f s", label, time.perf_counter() - start)

    def __call__(self, images: torch.Tensor):
        """The network's output (a tensor, or a tuple of them for a net with ``classes``)."""
        results = self.compiled(images.contiguous().numpy())
        # copies: OpenVINO reuses its buffers
        outs = tuple(torch.from_numpy(np.array(results[i], dtype=np.float32)) for i in range(len(results)))
        return outs[0] if len(outs) == 1 else outs


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Set torch's intra-op thread count for a block (None: unchanged)."""
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
