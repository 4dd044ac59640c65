"""Embed images with a network's body (or a trained head): (n, d) float32, L2-normalised, cached.

::

    embedder = Embedder.create(arch="efficientnet_lite2")          # a pretrained backbone
    embedder = Embedder.create(model="runs/train1", layer="head")   # a `fashion train` output dir
    result = embedder.embed(items, batch_size=64, cache_dir="cache")
    result.vectors  # (n, d) float32, unit rows; zero rows where result.ok is False
    result.failures # [(path, reason), ...] of the images that could not be used

The stages, one module each:

- :mod:`.reader`: items → decoded, resized uint8 batches. The image is opened with
  :func:`fashion.images.open_image` (EXIF-upright RGB, optional bbox crop); a pretrained backbone
  (``resize="crop"``, ImageNet evaluation style) resizes the shorter side to ``size`` and cuts out the
  centre; a trained model uses the transform it was trained with (``"squish"``).
- :mod:`.net`: the embedding network (normalise with the model's mean/std, body, pool or head,
  L2-normalise) and its runtimes, ``torch`` and ``openvino`` (``runtime="auto"``: OpenVINO for jobs of
  at least ``OPENVINO_MIN_IMAGES`` images when installed), and ``openvino-int8`` (opt-in: the body
  quantised to int8 by NNCF, calibrated on the bundled sample, :mod:`.int8`). ``precision="auto"`` uses bf16 where the CPU
  has it natively; ``"fp32"`` turns it off in both runtimes. Imports torch, so it loads on first use.
- :mod:`.cache`: the chunked, atomically written cache the writer stage fills
  (``cache_dir/<checksum[:16]>-<size>-<layer>-<precision>[-openvino|-openvino-int8-<calibration id>]-<resize>[-bbox]/chunk_NNNNN.npz``).
  Chunks hold a whole number of batches, so a resumed run feeds the network the same batches as an
  uninterrupted run and the vectors are bitwise identical.
- :mod:`.pipeline`: reader → net → writer, each stage timed (``EmbeddingResult.timing``).
- :mod:`.embedder`: :class:`Embedder`, the public composition.
- :mod:`.ir`: the network of an OpenVINO run saved as OpenVINO IR under the run, and
  :class:`~.ir.SavedNetwork`, which serves it without torch (:mod:`.ovcore`: OpenVINO's one Core, torch-free).
- :mod:`.spec`: :class:`EmbedderSpec`, the one description of an embedder (CLI → cache key → run.json →
  the service's rebuild).

``layer="body"``: the body's feature map, global-average-pooled (what the original study used).
``layer="head"``: the trained head's penultimate features (trained models only).
"""

from __future__ import annotations

from .embedder import (
    DEFAULT_CHUNK_SIZE,
    LAYERS,
    NO_FEATURES,
    NON_FINITE,
    OPENVINO_MIN_IMAGES,
    PRECISIONS,
    RUNTIMES,
    Embedder,
    EmbeddingResult,
)
from .spec import EmbedderSpec
from .reader import default_num_workers

_NET = ("EmbeddingNet", "TorchRuntime", "OpenVINORuntime", "fold_batchnorm", "bf16_supported",
        "openvino_available", "state_dict_sha256")


def __getattr__(name: str):
    """The torch-side names of :mod:`.net`, imported on first use (importing this package loads no torch)."""
    if name in _NET:
        from . import net

        return getattr(net, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Embedder", "EmbedderSpec", "EmbeddingResult", "LAYERS", "PRECISIONS", "RUNTIMES", "OPENVINO_MIN_IMAGES",
           "DEFAULT_CHUNK_SIZE", "NO_FEATURES", "NON_FINITE", "default_num_workers", *_NET]
