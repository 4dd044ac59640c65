"""A harder generalisation check than the test split (#15, item 4): the test photos under strong
photometric and geometric perturbations — another photographer's framing, light and camera, roughly.

:func:`perturb_image` is pure (an image and a seed in, a new image out, the same for the same seed);
:func:`perturbed_probs` runs a classifier on the perturbed photos with the inference preprocessing
(:func:`fashion.modelio.preprocess`). ``TrainConfig(hard_check=True)`` (the default) makes
:func:`fashion.training.evaluate` report the accuracy beside the plain test accuracy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd
    from PIL import Image

SEED = 0  # the perturbation of test photo i uses seed SEED + i: every run sees the same photos


def perturb_image(image: "Image.Image", seed: int) -> "Image.Image":
    """A strongly perturbed copy of an RGB image, the same for the same ``seed``.

    In order: a random crop keeping 55–100 % of the area (aspect 3:4 to 4:3), a mirror with p = 0.5, a
    rotation of up to ±25° (edges filled with grey), brightness and contrast × 0.55–1.45, saturation
    × 0.3–1.7, a Gaussian blur of radius 0–1.5 px of a 200 px image, and a JPEG round trip at quality 25–60.
    The output has the input's size.

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

    rng = np.random.default_rng(seed)
    image = image.convert("RGB")
    w, h = image.size
    area, ratio = rng.uniform(0.55, 1.0) * w * h, math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    cw, ch = min(w, max(1, round(math.sqrt(area * ratio)))), min(h, max(1, round(math.sqrt(area / ratio))))
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    out = image.crop((left, top, left + cw, top + ch)).resize((w, h), Image.BILINEAR)
    if rng.random() < 0.5:
        out = ImageOps.mirror(out)
    out = out.rotate(float(rng.uniform(-25, 25)), resample=Image.BILINEAR, fillcolor=(128, 128, 128))
    out = ImageEnhance.Brightness(out).enhance(float(rng.uniform(0.55, 1.45)))
    out = ImageEnhance.Contrast(out).enhance(float(rng.uniform(0.55, 1.45)))
    out = ImageEnhance.Color(out).enhance(float(rng.uniform(0.3, 1.7)))
    out = out.filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 1.5)) * max(w, h) / 200))
    buffer = io.BytesIO()
    out.save(buffer, "JPEG", quality=int(rng.integers(25, 61)))
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def perturbed_probs(model, frame: "pd.DataFrame", size: int, mean: Sequence[float], std: Sequence[float],
                    crop: bool = False, seed: int = SEED, batch_size: int = 32) -> "np.ndarray":
    """Class probabilities float32 (n, c) of ``model`` ((N, 3, S, S) normalised → logits) on the
    perturbed photos of ``frame`` (columns path, [bbox]); photo i is perturbed with seed ``seed + i``."""
    import numpy as np
    import torch

    from ..images import open_image
    from ..modelio import preprocess

    model = model.eval()
    out = []
    rows = list(frame.to_dict("records"))
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = rows[start:start + batch_size]
            images = [perturb_image(open_image(r["path"], r.get("bbox") if crop else None), seed + start + i)
                      for i, r in enumerate(batch)]
            out.append(torch.softmax(model(preprocess(images, size, mean, std)).float(), dim=1).numpy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)
