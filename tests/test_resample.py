"""fashion.resample: torch's antialiased bilinear uint8 resize, bit for bit, without torch."""

from __future__ import annotations

import numpy as np
import pytest

from fashion.resample import axis_weights, resize_bilinear_aa


def _torch_resize(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    chw = torch.from_numpy(pixels).permute(2, 0, 1)[None]
    out = F.interpolate(chw, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return out[0].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("seed", range(4))
def test_bitwise_equal_to_torch_on_random_sizes(seed):
    rng = np.random.default_rng(seed)
    for _ in range(40):  # shrinking, enlarging, one axis only, 1 px, large factors
        h, w = (int(v) for v in rng.integers(1, 900, 2))
        oh, ow = (224, 224) if rng.random() < 0.3 else (int(v) for v in rng.integers(1, 320, 2))
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        assert np.array_equal(resize_bilinear_aa(pixels, oh, ow), _torch_resize(pixels, oh, ow)), (h, w, oh, ow)


def test_edge_values_and_identity():
    rng = np.random.default_rng(9)
    for value in (0, 255):
        flat = np.full((301, 97, 3), value, np.uint8)
        assert (resize_bilinear_aa(flat, 224, 224) == value).all()
    pixels = rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)
    assert np.array_equal(resize_bilinear_aa(pixels, 50, 60), pixels)
    out = resize_bilinear_aa(pixels, 7, 600)
    assert out.shape == (7, 600, 3) and out.dtype == np.uint8 and out.flags.c_contiguous


def test_weights_sum_to_one_in_fixed_point():
    for in_size, out_size in ((533, 224), (224, 533), (4000, 224), (3, 3), (1, 5)):
        xmin, weights, precision = axis_weights(in_size, out_size)
        sums = weights.sum(axis=1)
        assert (np.abs(sums - (1 << precision)) <= weights.shape[1]).all() and (xmin >= 0).all()


def test_a_pil_image_and_odd_layouts_give_the_arrays_bytes():
    from PIL import Image

    rng = np.random.default_rng(3)
    for h, w, oh, ow in ((533, 400, 224, 224), (224, 300, 224, 224), (300, 224, 224, 224), (5, 900, 3, 17)):
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        want = _torch_resize(pixels, oh, ow)
        assert np.array_equal(resize_bilinear_aa(Image.fromarray(pixels), oh, ow), want), (h, w)
        assert np.array_equal(resize_bilinear_aa(np.asfortranarray(pixels), oh, ow), want), (h, w)  # any strides
    grey = rng.integers(0, 256, (40, 70, 1), dtype=np.uint8)  # not 3 channels: numpy's transpose
    out = resize_bilinear_aa(grey, 20, 30)
    assert np.array_equal(out[..., 0], resize_bilinear_aa(np.repeat(grey, 3, axis=2), 20, 30)[..., 0])
    same = rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)
    out = resize_bilinear_aa(same, 50, 60)
    assert np.array_equal(out, same) and out is not same  # the identity is a copy: the caller may write to it
    for image in (Image.fromarray(same), Image.fromarray(pixels)):  # from an image: writable too
        out = resize_bilinear_aa(image, 50, 60)
        assert out.flags.writeable and out.flags.c_contiguous and out.shape == (50, 60, 3)


@pytest.mark.parametrize("seed", range(3))
def test_a_window_gives_the_whole_outputs_bytes_there(seed):
    from PIL import Image

    rng = np.random.default_rng(100 + seed)
    for _ in range(30):  # shrinking and enlarging either axis, one axis unchanged, windows at the edges
        h, w = (int(v) for v in rng.integers(1, 700, 2))
        oh, ow = (int(v) for v in rng.integers(1, 320, 2))
        if rng.random() < 0.2:
            oh = h
        elif rng.random() < 0.2:
            ow = w
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        whole = resize_bilinear_aa(pixels, oh, ow)
        for _ in range(3):
            rows, cols = int(rng.integers(0, oh + 1)), int(rng.integers(0, ow + 1))
            top, left = int(rng.integers(0, oh - rows + 1)), int(rng.integers(0, ow - cols + 1))
            want = whole[top:top + rows, left:left + cols]
            for source in (pixels, Image.fromarray(pixels)):
                got = resize_bilinear_aa(source, oh, ow, (top, left, rows, cols))
                assert got.shape == want.shape and np.array_equal(got, want), (h, w, oh, ow, top, left, rows, cols)
                assert got.flags.c_contiguous and got.flags.writeable
    with pytest.raises(ValueError, match="not inside"):
        resize_bilinear_aa(pixels, oh, ow, (0, 0, oh + 1, ow))


def test_the_centre_crop_computes_only_the_crop_and_gives_torchs_bytes(monkeypatch):
    """Without torch in the process (a served OpenVINO network) the crop is computed in numpy, window only."""
    import sys

    from PIL import Image

    from fashion.resize import resize_center_crop

    rng = np.random.default_rng(7)
    for h, w in ((534, 400), (400, 711), (400, 400), (225, 1000), (3000, 224), (224, 224)):
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        scale = 224 / min(w, h)
        nw, nh = max(224, round(w * scale)), max(224, round(h * scale))
        top, left = (nh - 224) // 2, (nw - 224) // 2
        want = _torch_resize(pixels, nh, nw)[top:top + 224, left:left + 224]
        with monkeypatch.context() as m:
            m.delitem(sys.modules, "torch")  # resize_center_crop takes the numpy path
            got = resize_center_crop(Image.fromarray(pixels), 224)
        assert np.array_equal(got, want), (h, w)


def test_a_window_of_full_rows_at_the_same_size_is_a_new_array():
    pixels = np.random.default_rng(1).integers(0, 256, (8, 6, 3), dtype=np.uint8)
    got = resize_bilinear_aa(pixels, 8, 6, (2, 0, 4, 6))
    assert np.array_equal(got, pixels[2:6]) and not np.may_share_memory(got, pixels)
