"""fashion.images: every mode, EXIF orientation, bbox crops and every kind of bad file."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

from fashion.errors import ImageError
from fashion.images import IMAGE_EXTENSIONS, check_images, crop_bbox, open_image, to_rgb
from fashion.resize import resize_image


def save(image: Image.Image, path, **kwargs):
    image.save(path, **kwargs)
    return path


def jpeg_bytes(size=(32, 24), color=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def test_extensions_are_lower_case_suffixes():
    assert {".jpg", ".jpeg", ".png", ".webp", ".tif"} <= IMAGE_EXTENSIONS
    assert all(ext.startswith(".") and ext == ext.lower() for ext in IMAGE_EXTENSIONS)


def test_rgb_jpeg_opens_fully_loaded(tmp_path):
    path = tmp_path / "a.jpg"
    path.write_bytes(jpeg_bytes())
    image = open_image(path)
    assert image.mode == "RGB" and image.size == (32, 24)
    os.remove(path)  # fully loaded: no lazy read from the file later
    assert image.getpixel((5, 5))[0] > 150


@pytest.mark.parametrize(
    "mode, make, expected",
    [
        ("L", lambda: Image.new("L", (4, 3), 100), (100, 100, 100)),
        ("1", lambda: Image.new("1", (4, 3), 1), (255, 255, 255)),
        ("P", lambda: Image.new("RGB", (4, 3), (10, 200, 30)).quantize(4), (10, 200, 30)),
        ("LA", lambda: Image.new("LA", (4, 3), (0, 0)), (255, 255, 255)),
        ("RGBA", lambda: Image.new("RGBA", (4, 3), (0, 0, 255, 0)), (255, 255, 255)),
        ("RGBA-opaque", lambda: Image.new("RGBA", (4, 3), (0, 0, 255, 255)), (0, 0, 255)),
        ("CMYK", lambda: Image.new("CMYK", (4, 3), (0, 0, 0, 0)), (255, 255, 255)),
        ("I;16", lambda: Image.new("I;16", (4, 3), 65535), (255, 255, 255)),
        ("I;16-mid", lambda: Image.new("I;16", (4, 3), 257 * 100), (100, 100, 100)),
    ],
)
def test_modes_become_rgb(tmp_path, mode, make, expected):
    image = make()
    fmt = "TIFF" if image.mode == "CMYK" else "PNG"
    path = save(image, tmp_path / f"img.{fmt.lower()}", format=fmt)
    out = open_image(path)
    assert out.mode == "RGB" and out.size == (4, 3)
    assert out.getpixel((1, 1)) == pytest.approx(expected, abs=2)


def test_palette_with_transparency_composited_on_white(tmp_path):
    image = Image.new("P", (4, 3), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.putpixel((0, 0), 1)
    path = save(image, tmp_path / "t.png", transparency=0)  # index 0 (black) is transparent
    out = open_image(path)
    assert out.getpixel((2, 2)) == (255, 255, 255)
    assert out.getpixel((0, 0)) == (255, 0, 0)


def test_pa_and_gif_transparency(tmp_path):
    rgba = Image.new("RGBA", (4, 3), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 255, 0, 255))
    pa = rgba.convert("PA")
    assert to_rgb(pa).getpixel((2, 2)) == (255, 255, 255)
    path = save(rgba, tmp_path / "t.gif")
    assert open_image(path).getpixel((2, 2)) == (255, 255, 255)


def test_32bit_and_float_images_scaled():
    assert to_rgb(Image.fromarray(np.full((2, 2), 70000, np.int32))).getpixel((0, 0)) == (255, 255, 255)
    assert to_rgb(Image.fromarray(np.full((2, 2), 200, np.int32))).getpixel((0, 0)) == (200, 200, 200)
    assert to_rgb(Image.fromarray(np.full((2, 2), 0.5, np.float32))).getpixel((0, 0))[0] in (127, 128)
    ramp = Image.fromarray(np.array([[-5.0, 5.0]], np.float32))
    assert [to_rgb(ramp).getpixel((x, 0))[0] for x in (0, 1)] == [0, 255]


def test_exif_orientation_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    path = save(image, tmp_path / "rot.jpg", exif=exif.tobytes())
    assert Image.open(path).size == (40, 20)
    assert open_image(path).size == (20, 40)


def test_png_named_jpg_opens(tmp_path):
    path = save(Image.new("RGB", (5, 6), (1, 2, 3)), tmp_path / "fake.jpg", format="PNG")
    assert open_image(path).getpixel((0, 0)) == (1, 2, 3)


def test_bbox_crop_clipped(tmp_path):
    path = save(Image.new("RGB", (40, 30)), tmp_path / "a.png")
    assert open_image(path, bbox=(10, 5, 20, 25)).size == (10, 20)
    assert open_image(path, bbox=(-10, -10, 100, 100)).size == (40, 30)
    assert open_image(path, bbox=(35, 0, 60, 10)).size == (5, 10)


@pytest.mark.parametrize("bbox", [(50, 0, 60, 10), (10, 10, 10, 20), (20, 5, 10, 25), (0, 40, 10, 50)])
def test_empty_bbox_is_an_error(tmp_path, bbox):
    path = save(Image.new("RGB", (40, 30)), tmp_path / "a.png")
    with pytest.raises(ImageError, match="empty"):
        open_image(path, bbox=bbox)


def test_bad_bbox_values():
    with pytest.raises(ImageError, match="4 numbers"):
        crop_bbox(Image.new("RGB", (4, 4)), ("a", 0, 1, 1))


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="not found") as info:
        open_image(tmp_path / "nope.jpg")
    assert info.value.path == tmp_path / "nope.jpg"


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match="empty file"):
        open_image(path)


def test_directory_is_an_error(tmp_path):
    with pytest.raises(ImageError, match="directory"):
        open_image(tmp_path)


def test_random_bytes_unreadable(tmp_path):
    path = tmp_path / "junk.jpg"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    with pytest.raises(ImageError, match="cannot identify"):
        open_image(path)


def test_truncated_jpeg(tmp_path):
    data = jpeg_bytes((64, 64))
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated"):
        open_image(path)


def test_truncated_png(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buffer.getvalue()[:-200])
    with pytest.raises(ImageError):
        open_image(path)


@pytest.mark.parametrize("side", [12, 20])  # 144 px: Pillow only warns; 400 px: Pillow raises
def test_decompression_bomb(tmp_path, monkeypatch, side):
    path = save(Image.new("RGB", (side, side)), tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageError, match="too large"):
        open_image(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    assert open_image(path).size == (side, side)


def test_check_images_lists_bad_ones(tmp_path):
    good = save(Image.new("RGB", (4, 4)), tmp_path / "good.png")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    bad = check_images([good, empty, tmp_path / "gone.jpg"], bboxes=[(0, 0, 2, 2), None, None])
    assert [path for path, _ in bad] == [str(empty), str(tmp_path / "gone.jpg")]
    assert check_images([good], [(10, 10, 20, 20)])[0][1].startswith("bbox")
    with pytest.raises(ValueError):
        check_images([good], [])


def test_image_error_pickles(tmp_path):
    import pickle

    error = pickle.loads(pickle.dumps(ImageError(tmp_path / "x.jpg", "empty file (0 bytes)")))
    assert error.reason == "empty file (0 bytes)"


def test_one_pixel_and_cmyk_jpeg(tmp_path):
    assert open_image(save(Image.new("RGB", (1, 1), (9, 9, 9)), tmp_path / "dot.png")).size == (1, 1)
    path = save(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), tmp_path / "cmyk.jpg", quality=95)
    red = open_image(path).getpixel((4, 4))
    assert red[0] > 200 and red[1] < 60 and red[2] < 60


def _textured(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth gradients plus noise: resizing it exercises every filter tap."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) % 256], axis=-1)
    return Image.fromarray(np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8))


@pytest.mark.parametrize("size", [(400, 533), (533, 400), (30, 90), (224, 224)])
def test_squish_matches_pillow_bilinear_within_one_level(size):
    """The fast (torch) resize is Pillow's BILINEAR up to rounding: shrinking (antialiased), enlarging, same size."""
    image = _textured(*size)
    fast = resize_image(image, 64 if size == (30, 90) else 224, "squish")
    side = fast.shape[0]
    slow = np.asarray(image.resize((side, side), Image.Resampling.BILINEAR))
    assert fast.dtype == np.uint8 and fast.shape == (side, side, 3) and fast.flags.c_contiguous
    assert np.abs(fast.astype(int) - slow.astype(int)).max() <= 1


def test_center_crop_matches_pillow_resize_then_crop():
    image = _textured(400, 533, seed=1)
    fast = resize_image(image, 224, "crop")
    slow = np.asarray(image.resize((224, 298), Image.Resampling.BILINEAR).crop((0, 37, 224, 261)))
    assert fast.shape == (224, 224, 3) and np.abs(fast.astype(int) - slow.astype(int)).max() <= 1


def test_unknown_resize_method():
    with pytest.raises(ValueError, match="resize must be one of"):
        resize_image(Image.new("RGB", (8, 8)), 4, "stretch")


def _photo_like(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth colour gradients with some texture: what a downscaled decode has to preserve."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([128 + 100 * np.sin(x / 37.0 + c) * np.cos(y / 53.0 - c) for c in range(3)], axis=-1)
    pixels += rng.normal(0, 6, size=pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _jpeg(image: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90, **kwargs)
    return buf.getvalue()


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_only_when_large_enough():
    from fashion.images import open_image_bytes
    from fashion.jpeg import jpeg_scale

    data = _jpeg(_photo_like(1000, 700))
    full = open_image_bytes(data, strict=True)
    reduced = open_image_bytes(data, strict=True, min_size=160)  # 1/4: 250 x 175, both sides >= 160
    assert full.size == (1000, 700) and reduced.size == (250, 175) and reduced.mode == "RGB"
    assert jpeg_scale(1000, 700, 160) == 4 and jpeg_scale(1000, 700, 400) == 1 and jpeg_scale(1000, 700, 350) == 2
    assert open_image_bytes(data, strict=True, min_size=400).size == (1000, 700)  # 1/2 would be 350 px high
    assert open_image_bytes(data, strict=True, min_size=350).size == (500, 350)
    # what the network sees: within a grey level of the full-size decode on average (measured: 0.44 squish,
    # 0.52 crop, at most 3 levels on a pixel)
    for method in ("squish", "crop"):
        a = resize_image(full, 160, method).astype(int)
        b = resize_image(reduced, 160, method).astype(int)
        assert np.abs(a - b).mean() < 1.0, method
    # other formats are decoded whole
    buf = io.BytesIO()
    _photo_like(1000, 700).save(buf, format="PNG")
    assert open_image_bytes(buf.getvalue(), min_size=160).size == (1000, 700)


def test_the_reduced_decode_keeps_the_gate_orientation_and_colour(tmp_path):
    from fashion.images import open_image_bytes

    data = _jpeg(_photo_like(1000, 700))
    for cut in (len(data) // 2, len(data) - 100):  # damaged entropy data is refused at any scale
        with pytest.raises(ImageError, match="corrupt"):
            open_image_bytes(data[:cut], strict=True, min_size=160)
    with pytest.raises(ImageError, match="over this limit"):  # the pixel limit, from the header
        open_image_bytes(data, max_pixels=500_000, min_size=160)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    rotated = open_image_bytes(_jpeg(_photo_like(800, 400), exif=exif.tobytes()), min_size=100)
    assert rotated.size == (100, 200)  # 1/4 scale, upright
    grey = open_image_bytes(_jpeg(_photo_like(800, 400).convert("L")), min_size=100)
    assert grey.mode == "RGB" and grey.size == (200, 100)
    path = tmp_path / "big.jpg"
    path.write_bytes(data)
    assert open_image(path, min_size=160).size == (250, 175)
    assert open_image(path, bbox=(0, 0, 500, 500), min_size=160).size == (500, 500)  # a crop: full scale


@pytest.mark.parametrize("orientation", range(2, 9))
def test_the_reduced_decode_turns_every_exif_orientation_as_the_full_decode(orientation):
    # the reduced path has its own orientation table (images._TRANSPOSES); the full decode uses
    # ImageOps.exif_transpose: an asymmetric photo must come out the same way up from both
    from fashion.images import open_image_bytes

    pixels = np.zeros((400, 800, 3), dtype=np.uint8)
    pixels[:, :300] = (220, 30, 30)  # a red left part, a green top-right corner, the rest blue
    pixels[:, 300:] = (30, 30, 220)
    pixels[:150, 600:] = (30, 200, 30)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _jpeg(Image.fromarray(pixels), exif=exif.tobytes())
    full = open_image_bytes(data)
    reduced = open_image_bytes(data, min_size=100)
    assert reduced.size == (full.width // 4, full.height // 4)
    expected = np.asarray(full.resize(reduced.size, Image.Resampling.BOX), dtype=float)
    assert np.abs(np.asarray(reduced, dtype=float) - expected).mean() < 8


@pytest.mark.parametrize("kind", ["baseline", "progressive", "grey", "exif", "subsampling-444"])
def test_the_strict_full_size_decode_gives_pillows_bytes(kind, monkeypatch):
    # a strict upload at full size is decoded by libjpeg (simplejpeg) in one pass with its data check: the
    # same pixels as Pillow's own decode, so a served photo meets the network as the batch path's does
    from fashion.images import open_image_bytes

    photo = _photo_like(410, 530)
    exif = Image.Exif()
    exif[0x0112] = 6
    options = {"baseline": {}, "progressive": {"progressive": True}, "exif": {"exif": exif.tobytes()},
               "grey": {}, "subsampling-444": {"subsampling": 0}}[kind]
    data = _jpeg(photo.convert("L") if kind == "grey" else photo, **options)
    import simplejpeg

    calls = []
    decode = simplejpeg.decode_jpeg
    monkeypatch.setattr(simplejpeg, "decode_jpeg", lambda *a, **k: calls.append(k) or decode(*a, **k))
    strict = open_image_bytes(data, strict=True, min_size=224)  # under twice 224 px: full size
    assert [k["colorspace"] for k in calls] == ["RGB"]  # one libjpeg pass, at full size, no second check
    pillow = open_image_bytes(data)  # not strict: Pillow's decoder
    assert strict.mode == pillow.mode == "RGB" and strict.size == pillow.size
    assert np.array_equal(np.asarray(strict), np.asarray(pillow))
    with pytest.raises(ImageError, match="corrupt"):  # the data check still refuses damaged data
        open_image_bytes(data[:len(data) // 2], strict=True, min_size=224)
