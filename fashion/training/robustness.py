"""A harder generalisation check than the test split (#15, item 4): the test photos under strong
photometric and geometric perturbations — another photographer's framing, light and camera, roughly.

:func:`perturb_image` is pure (an image and a seed in, a new image out, the same for the same seed);
:func:`perturbed_probs` runs a classifier on the perturbed photos with the inference preprocessing
(:func:`fashion.modelio.preprocess`). ``TrainConfig(hard_check=True)`` (the default) makes
:func:`fashion.training.evaluate` report the accuracy beside the plain test accuracy.

:func:`perturbation` names the parts for a per-perturbation figure (``benchmarks/outofsplit.py``): each step
of :func:`perturb_image` alone, and two a phone photo brings that it lacks, another background and the
garment smaller in the frame (:mod:`.backdrops`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd
    from PIL import Image

SEED = 0  # the perturbation of test photo i uses seed SEED + i: every run sees the same photos


#: The steps of :func:`perturb_image`, each of which :func:`perturb_image` can apply alone (``only``).
STEPS = ("crop", "mirror", "rotation", "light", "blur", "jpeg")


def perturb_image(image: "Image.Image", seed: int, only: Sequence[str] | None = None) -> "Image.Image":
    """A strongly perturbed copy of an RGB image, the same for the same ``seed``.

    In order: a random crop keeping 55–100 % of the area (aspect 3:4 to 4:3), a mirror with p = 0.5, a
    rotation of up to ±25° (edges filled with grey), brightness and contrast × 0.55–1.45, saturation
    × 0.3–1.7, a Gaussian blur of radius 0–1.5 px of a 200 px image, and a JPEG round trip at quality 25–60.
    The output has the input's size.

    ``only``: apply just these of :data:`STEPS` (None: all). Every random number is drawn whichever steps
    apply, so a step alone is exactly the one the full perturbation of that seed applies.

    >>> from PIL import Image
    >>> im = Image.new("RGB", (40, 30), (200, 30, 30))
    >>> a, b = perturb_image(im, 3), perturb_image(im, 3)
    >>> a.size, a.tobytes() == b.tobytes()
    ((40, 30), True)
    """
    import io
    import math

    import numpy as np
    from PIL import Image, ImageEnhance, ImageFilter, ImageOps

    steps = set(STEPS if only is None else only)
    if steps - set(STEPS):
        raise ValueError(f"unknown perturbation steps {sorted(steps - set(STEPS))}; known: {', '.join(STEPS)}")
    rng = np.random.default_rng(seed)
    image = image.convert("RGB")
    w, h = image.size
    area, ratio = rng.uniform(0.55, 1.0) * w * h, math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    cw, ch = min(w, max(1, round(math.sqrt(area * ratio)))), min(h, max(1, round(math.sqrt(area / ratio))))
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    out = image.crop((left, top, left + cw, top + ch)).resize((w, h), Image.BILINEAR) if "crop" in steps else image
    if rng.random() < 0.5 and "mirror" in steps:
        out = ImageOps.mirror(out)
    angle = float(rng.uniform(-25, 25))
    if "rotation" in steps:
        out = out.rotate(angle, resample=Image.BILINEAR, fillcolor=(128, 128, 128))
    light = [float(rng.uniform(0.55, 1.45)), float(rng.uniform(0.55, 1.45)), float(rng.uniform(0.3, 1.7))]
    if "light" in steps:
        out = ImageEnhance.Brightness(out).enhance(light[0])
        out = ImageEnhance.Contrast(out).enhance(light[1])
        out = ImageEnhance.Color(out).enhance(light[2])
    radius = float(rng.uniform(0, 1.5)) * max(w, h) / 200
    if "blur" in steps:
        out = out.filter(ImageFilter.GaussianBlur(radius))
    quality = int(rng.integers(25, 61))
    if "jpeg" not in steps:
        return out
    buffer = io.BytesIO()
    out.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def perturbation(name: str):
    """The perturbation ``name`` as a function (image, seed) → image: "none" (the photo as it is), "all"
    (:func:`perturb_image`, the check ``fashion train`` reports), one of its :data:`STEPS` alone, or
    "background" / "scale" (:mod:`.backdrops`: the garment on another background, the garment smaller
    in the frame).

    >>> from PIL import Image
    >>> perturbation("mirror")(Image.new("RGB", (4, 3)), 0).size
    (4, 3)
    """
    from functools import partial

    from . import backdrops

    if name == "none":
        return _unchanged
    if name == "all":
        return perturb_image
    if name in STEPS:
        return partial(perturb_image, only=(name,))
    named = {"background": backdrops.swap_background, "scale": backdrops.zoom_out}
    if name not in named:
        raise ValueError(f"unknown perturbation {name!r}; known: {', '.join(PERTURBATIONS)}")
    return named[name]


def _unchanged(image: "Image.Image", seed: int) -> "Image.Image":
    return image.convert("RGB")


#: Every perturbation :func:`perturbation` knows: none, the combined one, then each alone.
PERTURBATIONS = ("none", "all") + STEPS + ("background", "scale")

#: The perturbed-photo checks ``fashion train`` reports: (metrics.json key, :func:`perturbation` kind,
#: label in the log, the summary line and ``benchmarks/train_clothing.py``'s accuracy line).
PERTURBED = (("perturbed", "all", "perturbed photos"), ("perturbed_background", "background", "on another background"),
             ("perturbed_scale", "scale", "garment smaller in the frame"))


def perturbed_probs(model, frame: "pd.DataFrame", size: int, mean: Sequence[float], std: Sequence[float],
                    crop: bool = False, seed: int = SEED, batch_size: int = 32, kind: str = "all") -> "np.ndarray":
    """Class probabilities float32 (n, c) of ``model`` ((N, 3, S, S) normalised → logits) on the
    perturbed photos of ``frame`` (columns path, [bbox]); photo i is perturbed with seed ``seed + i`` by
    :func:`perturbation` ``kind``."""
    import numpy as np
    import torch

    from ..images import open_image
    from ..modelio import preprocess

    perturb = perturbation(kind)
    model = model.eval()
    out = []
    rows = list(frame.to_dict("records"))
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = rows[start:start + batch_size]
            images = [perturb(open_image(r["path"], r.get("bbox") if crop else None), seed + start + i)
                      for i, r in enumerate(batch)]
            out.append(torch.softmax(model(preprocess(images, size, mean, std)).float(), dim=1).numpy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)
