"""Bad input, case by case: what is salted into a dataset, and the one outcome it must have.

The promises (issue 5, item 1), read top to bottom:

- every damaged image (empty, truncated, random bytes, over Pillow's decompression-bomb limit) raises
  ``ImageError`` whose one-line message names the file and says why — and a run over a root salted
  with them *finishes*, counts them in metrics.json / the training log and lists them in the report;
- every unusual but valid image (a PNG named ``.jpg``, CMYK, greyscale, palette, RGBA, 16-bit, 1 × 1)
  opens as an RGB picture with the right colours;
- every malformed annotation row raises one ``DatasetError`` line ``<file>:<line>: <what is wrong>``,
  also from the command line (exit code 2, one line on stderr, no traceback);
- harmless oddities (Windows line ends, a BOM, names with spaces, unicode or HTML, an empty split, a
  class of one image, ``.DS_Store``/``Thumbs.db``/``.txt`` files) load.

The tables below are the list of cases; each row carries its expected outcome.
"""

from __future__ import annotations

import html
import json
import logging
import re
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fashion import cli, datasets
from fashion.errors import DatasetError, ImageError
from fashion.images import check_images, open_image

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ images


def _noise(size=(32, 24), color=(200, 40, 40), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(color) + rng.normal(0, 20, (size[1], size[0], 3)), 0, 255)
    return Image.fromarray(pixels.astype(np.uint8))


def _save(image: Image.Image, fmt: str) -> Callable[[Path], None]:
    return lambda path: image.save(path, format=fmt)


def _bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def _truncated(fmt: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        _noise(size=(64, 48)).save(path, format=fmt)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])

    return write


def _two_tone(mode: str, size: tuple[int, int], left, right, fmt: str, palette: bool = False) -> Callable[[Path], None]:
    """An image whose left half is ``left`` and right half ``right`` (a blank one has no features)."""

    def write(path: Path) -> None:
        image = Image.new(mode, size, left)
        image.paste(Image.new(mode, (size[0] - size[0] // 2, size[1]), right), (size[0] // 2, 0))
        (image.convert("P", palette=Image.Palette.ADAPTIVE) if palette else image).save(path, format=fmt)

    return write


def _sixteen_bit(path: Path) -> None:
    pixels = np.full((6, 8), 65535, dtype=np.uint16)
    pixels[:, 4:] = 4000
    Image.fromarray(pixels).save(path, format="PNG")  # mode I;16


def big_png(width: int, height: int, bits: int = 8) -> Callable[[Path], None]:
    """A genuine ``width × height`` greyscale PNG of zeros (8 or 16 bits a pixel), streamed: tiny on
    disk, cheap to write."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    def write(path: Path) -> None:
        packer, row = zlib.compressobj(9), bytes(width * bits // 8 + 1)  # filter byte + a row of black pixels
        idat = b"".join(packer.compress(row * 500) for _ in range(height // 500))
        idat += packer.compress(row * (height % 500)) + packer.flush()
        ihdr = struct.pack(">IIBBBBB", width, height, bits, 0, 0, 0, 0)
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))

    return write


@dataclass(frozen=True)
class ImageCase:
    """A salted image file: ``error`` is the regex of ImageError.reason, or None when it must open
    as an RGB image of ``size`` whose pixel (0, 0) is ``pixel`` (± 6 per channel)."""

    id: str
    name: str
    write: Callable[[Path], None]
    error: str | None = None
    size: tuple[int, int] | None = None
    pixel: tuple[int, int, int] | None = None


IMAGE_CASES = [
    ImageCase("zero_byte", "zero byte.jpg", _bytes(b""), error=r"^empty file \(0 bytes\)$"),
    ImageCase("truncated_jpeg", "truncated.jpg", _truncated("JPEG"), error=r"^truncated or corrupt image data"),
    ImageCase("truncated_png", "truncated_png.png", _truncated("PNG"), error=r"^truncated or corrupt image data"),
    ImageCase("random_bytes", "random.jpg", _bytes(np.random.default_rng(1).bytes(3000)),
              error=r"^cannot identify image file"),
    ImageCase("text_named_jpg", "notes_named.jpg", _bytes(b"just some text\n"), error=r"^cannot identify image file"),
    # 90,000,000 px: just over MAX_IMAGE_PIXELS (89,478,485), where Pillow itself only warns
    ImageCase("bomb_over_limit", "bomb.png", big_png(10_000, 9_000),
              error=r"^too large \(decompression bomb check\).*90000000 pixels"),
    # 180,000,000 px: over twice the limit, where Pillow raises DecompressionBombError
    ImageCase("bomb_twice_limit", "bomb2.png", big_png(15_000, 12_000),
              error=r"^too large \(decompression bomb check\).*180000000 pixels"),
    ImageCase("png_named_jpg", "png named.jpg", _two_tone("RGB", (9, 7), (10, 200, 30), (90, 0, 0), "PNG"),
              size=(9, 7), pixel=(10, 200, 30)),
    ImageCase("cmyk_jpeg", "cmyk.jpg", _two_tone("CMYK", (8, 8), (0, 255, 255, 0), (255, 0, 0, 0), "JPEG"),
              size=(8, 8), pixel=(255, 0, 0)),
    ImageCase("greyscale", "grey.jpg", _two_tone("L", (8, 6), 128, 20, "JPEG"), size=(8, 6), pixel=(128, 128, 128)),
    ImageCase("palette", "palette.png", _two_tone("RGB", (8, 8), (250, 120, 0), (0, 0, 90), "PNG", palette=True),
              size=(8, 8), pixel=(250, 120, 0)),
    ImageCase("rgba_transparent", "rgba.png", _two_tone("RGBA", (8, 8), (255, 0, 0, 0), (0, 0, 255, 255), "PNG"),
              size=(8, 8), pixel=(255, 255, 255)),  # alpha composited on white
    ImageCase("sixteen_bit", "sixteen.png", _sixteen_bit, size=(8, 6), pixel=(255, 255, 255)),  # 65535 -> 255
    ImageCase("one_pixel", "one pixel.jpg", _save(Image.new("RGB", (1, 1), (0, 0, 250)), "JPEG"),
              size=(1, 1), pixel=(0, 0, 250)),
]
BAD_IMAGES = [c for c in IMAGE_CASES if c.error]
GOOD_IMAGES = [c for c in IMAGE_CASES if not c.error]


@pytest.mark.parametrize("case", IMAGE_CASES, ids=lambda c: c.id)
def test_image_case(tmp_path, case):
    """open_image: a bad file raises one ImageError line naming it; a valid oddity opens as RGB."""
    path = tmp_path / case.name
    case.write(path)
    if case.error:
        with pytest.raises(ImageError) as info:
            open_image(path)
        assert re.search(case.error, info.value.reason), info.value.reason
        assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)
    else:
        image = open_image(path)
        assert (image.mode, image.size) == ("RGB", case.size)
        assert np.abs(np.subtract(image.getpixel((0, 0)), case.pixel)).max() <= 6, image.getpixel((0, 0))


def test_decompression_bomb_warning_band_is_an_error(tmp_path, monkeypatch):
    """Between MAX_IMAGE_PIXELS and twice that Pillow only warns; open_image refuses the image."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    path = tmp_path / "bomb.png"
    Image.new("RGB", (12, 12)).save(path)  # 144 px: in the warning band of a 100 px limit
    with pytest.warns(Image.DecompressionBombWarning):
        Image.open(path).load()  # Pillow alone lets it through
    with pytest.raises(ImageError, match=r"too large \(decompression bomb check\).*144 pixels"):
        open_image(path)


# ------------------------------------------------------------------------------- salted folder root

BAD_LABEL = "t shirt Ü <script>alert(1)</script>".replace("/", "")  # a folder name cannot hold '/'
SINGLE = "single"
NON_IMAGES = (".DS_Store", "Thumbs.db", "notes.txt")


def make_salted_folder(root: Path) -> Path:
    """train/valid/test image folders salted with every image case, non-image files, odd names,
    an empty split (test/) and a class of a single image. Bad images live in train/shirt/."""
    for split, n in (("train", 3), ("valid", 2)):
        for c, (label, color) in enumerate((("shirt", (200, 40, 40)), ("pants", (40, 60, 200)),
                                            (BAD_LABEL, (40, 180, 60)))):
            for i in range(n):
                folder = root / split / label
                folder.mkdir(parents=True, exist_ok=True)
                _noise(color=color, seed=100 * c + 10 * i + n).save(folder / f"photo {i} ü.jpg")
    for case in IMAGE_CASES:
        case.write(root / "train" / "shirt" / case.name)
    for name in NON_IMAGES:
        (root / "train" / "shirt" / name).write_bytes(b"\x00\x05\x16\x07 not an image")
    (root / "train" / SINGLE).mkdir()
    _noise(color=(120, 120, 120), seed=7).save(root / "train" / SINGLE / "only.jpg")
    (root / "test").mkdir()  # the empty split
    return root


@pytest.fixture(scope="module")
def salted_folder(tmp_path_factory) -> Path:
    return make_salted_folder(tmp_path_factory.mktemp("salted") / "folder root")


def test_folder_root_loads_with_every_oddity(salted_folder):
    """Non-image files are ignored and listed; odd labels, the single-image class and the empty
    split load; damaged images are still items (they are judged when opened, not when listed)."""
    table = datasets.load(salted_folder)
    items = table.frame
    assert table.format == "folder"
    assert list(table.ignored) == sorted(f"train/shirt/{n}" for n in NON_IMAGES)
    assert set(items["split"]) == {"train", "valid"}  # test/ is empty
    counts = items.groupby("label").size()
    assert counts[SINGLE] == 1 and counts[BAD_LABEL] == 5
    assert counts["shirt"] == 5 + len(IMAGE_CASES)
    assert "photo 0 ü.jpg" in set(Path(p).name for p in items["path"])
    assert "non-image files ignored: 3" in datasets.describe(table)


def test_check_images_lists_exactly_the_bad_ones(salted_folder):
    """check_images (used by training) returns each damaged file once, with its reason."""
    items = datasets.load(salted_folder).frame
    bad = dict(check_images(items["path"]))
    expected = {str(salted_folder / "train" / "shirt" / c.name): c for c in BAD_IMAGES}
    assert set(bad) == set(expected)
    for path, reason in bad.items():
        assert re.search(expected[path].error, reason), (path, reason)


# ----------------------------------------------------------------------------- DeepFashion root

CLOTH, IMG, BBOX, PART = ("Anno/list_category_cloth.txt", "Anno/list_category_img.txt", "Anno/list_bbox.txt",
                          "Eval/list_eval_partition.txt")
NAMES = [f"img/Blouse_A/img_0000000{i}.jpg" for i in (1, 2)] + [f"img/Jeans_B/img_0000000{i}.jpg" for i in (3, 4)]


def _base_files() -> dict[str, list[str]]:
    """A valid DeepFashion root: 2 categories, 4 images (img_2 is on line 4 of every image list)."""
    return {
        CLOTH: ["2", "category_name  category_type", "Blouse  1", "Jeans  2"],
        IMG: ["4", "image_name  category_label", *(f"{n}  {1 + i // 2}" for i, n in enumerate(NAMES))],
        BBOX: ["4", "image_name  x_1  y_1  x_2  y_2", *(f"{n}  1 1 20 20" for n in NAMES)],
        PART: ["4", "image_name  evaluation_status", *(f"{n}  {s}" for n, s in zip(NAMES, ("train", "val", "train", "test")))],
    }


def _row(file: str, line: int, text: str):
    """Edit: replace the 1-based ``line`` of ``file``."""
    return lambda files: files[file].__setitem__(line - 1, text)


def _rename(old: str, new: str):
    """Edit: rename an image in every list file (the file itself is written under the new name)."""
    def edit(files):
        for name in (IMG, BBOX, PART):
            files[name] = [line.replace(old, new) for line in files[name]]
    return edit


@dataclass(frozen=True)
class AnnoCase:
    """An edited DeepFashion root: ``error`` is the regex of the one-line DatasetError (None: loads,
    and then ``check`` holds for the item table)."""

    id: str
    edits: tuple = ()
    error: str | None = None
    check: Callable[[pd.DataFrame], bool] | None = None
    newline: str = "\n"
    bom: bool = False
    absent: tuple = ()  # listed images not written to disk
    encoding: str = "utf-8"


IMG_LINE4 = r"list_category_img\.txt:4: "
ANNO_CASES = [
    AnnoCase("short_row", (_row(IMG, 4, NAMES[1]),), IMG_LINE4 + r"expected 2 columns \(image_name category_label\), got 1"),
    AnnoCase("long_row", (_row(IMG, 4, f"{NAMES[1]}  1  7"),), IMG_LINE4 + r"expected 2 columns .*got 3"),
    AnnoCase("non_numeric_label", (_row(IMG, 4, f"{NAMES[1]}  one"),), IMG_LINE4 + r"expected an integer category_label, got 'one'"),
    AnnoCase("label_above_range", (_row(IMG, 4, f"{NAMES[1]}  3"),), IMG_LINE4 + r"unknown category id 3, .* defines 1\.\.2"),
    AnnoCase("label_zero", (_row(IMG, 4, f"{NAMES[1]}  0"),), IMG_LINE4 + r"unknown category id 0"),
    AnnoCase("label_negative", (_row(IMG, 4, f"{NAMES[1]}  -1"),), IMG_LINE4 + r"unknown category id -1"),
    AnnoCase("duplicated_row", (_row(IMG, 4, f"{NAMES[0]}  1"),), IMG_LINE4 + r"duplicate image '.*img_00000001\.jpg' \(first on line 3\)"),
    AnnoCase("count_too_high", (_row(IMG, 1, "5"),), r"list_category_img\.txt:1: the count line says 5 rows, found 4"),
    AnnoCase("count_too_low", (_row(IMG, 1, "3"),), r"list_category_img\.txt:1: the count line says 3 rows, found 4"),
    AnnoCase("count_not_a_number", (_row(IMG, 1, "four"),), r"list_category_img\.txt:1: expected the number of rows .*'four'"),
    AnnoCase("header_missing", (_row(IMG, 2, f"{NAMES[0]}  1  x"),), r"list_category_img\.txt:2: expected the header line"),
    AnnoCase("category_type_out_of_range", (_row(CLOTH, 4, "Jeans  4"),), r"list_category_cloth\.txt:4: category_type must be 1, 2 or 3"),
    AnnoCase("bbox_non_numeric", (_row(BBOX, 4, f"{NAMES[1]}  1 1 x 20"),), r"list_bbox\.txt:4: expected an integer x_2, got 'x'"),
    AnnoCase("bbox_out_of_range", (_row(BBOX, 4, f"{NAMES[1]}  -3 1 20 20"),), r"list_bbox\.txt:4: bad bbox \(-3, 1, 20, 20\)"),
    AnnoCase("bbox_inverted", (_row(BBOX, 4, f"{NAMES[1]}  20 1 5 20"),), r"list_bbox\.txt:4: bad bbox"),
    AnnoCase("unknown_split_word", (_row(PART, 4, f"{NAMES[1]}  holdout"),), r"list_eval_partition\.txt:4: unknown split 'holdout'"),
    AnnoCase("image_without_split", (_row(PART, 4, f"{NAMES[1]}x  val"),), IMG_LINE4 + r"image '.*img_00000002\.jpg' has no split in .*list_eval_partition\.txt"),
    AnnoCase("dotdot_path", (_rename(NAMES[1], "img/../../outside.jpg"),), IMG_LINE4 + r"image path 'img/\.\./\.\./outside\.jpg' escapes the dataset root"),
    AnnoCase("absolute_path", (_rename(NAMES[1], "/etc/passwd.jpg"),), IMG_LINE4 + r"absolute image path '/etc/passwd\.jpg'"),
    AnnoCase("not_utf8", (_row(IMG, 4, f"{NAMES[1][:-4]}\xe9.jpg  1"),), IMG_LINE4 + r"not UTF-8 text", encoding="latin-1"),
    # two spellings of one file are one item (issue 11, class 3): a duplicate, found on the resolved path
    AnnoCase("two_spellings_dot", (_rename(NAMES[1], "img/./Blouse_A/img_00000001.jpg"),),
             IMG_LINE4 + r"duplicate image 'img/\./Blouse_A/img_00000001\.jpg': the same file as "
                         r"'img/Blouse_A/img_00000001\.jpg' \(line 3\)"),
    AnnoCase("two_spellings_slashes", (_rename(NAMES[1], "img//Blouse_A//img_00000001.jpg"),),
             IMG_LINE4 + r"duplicate image 'img//Blouse_A//img_00000001\.jpg': the same file as"),
    AnnoCase("two_spellings_dotdot", (_rename(NAMES[1], "img/Jeans_B/../Blouse_A/img_00000001.jpg"),),
             IMG_LINE4 + r"duplicate image .*: the same file as 'img/Blouse_A/img_00000001\.jpg'"),
    AnnoCase("name_too_long", (_rename(NAMES[1], "img/Blouse_A/" + "x" * 300 + ".jpg"),),
             IMG_LINE4 + r"image name .*: the name is longer than the file system allows", absent=("img/Blouse_A/" + "x" * 300 + ".jpg",)),
    AnnoCase("listed_image_missing", absent=(NAMES[1],),
             error=r"list_category_img\.txt: 1 of 4 listed images do not exist: img/Blouse_A/img_00000002\.jpg \(line 4\)"),
    # harmless oddities: they load
    AnnoCase("windows_line_ends", newline="\r\n", check=lambda t: len(t) == 4 and set(t["label"]) == {"Blouse", "Jeans"}),
    AnnoCase("bom", bom=True, check=lambda t: len(t) == 4 and t["relpath"][0] == NAMES[0]),
    AnnoCase("bom_and_windows_line_ends", newline="\r\n", bom=True, check=lambda t: len(t) == 4),
    AnnoCase("name_with_spaces", (_rename(NAMES[1], "img/Blouse A/img 2.jpg"),),
             check=lambda t: t["relpath"][1] == "img/Blouse A/img 2.jpg" and t["bbox"][1] == (1, 1, 20, 20)),
    AnnoCase("unicode_names", (_rename(NAMES[1], "img/Blusé_Ä/画像 2.jpg"), _row(CLOTH, 3, "Blusé_Ä  1")),
             check=lambda t: t["relpath"][1] == "img/Blusé_Ä/画像 2.jpg" and t["label"][1] == "Blusé_Ä"),
    AnnoCase("html_names", (_rename(NAMES[1], "img/<script>alert(1)</script>.jpg"), _row(CLOTH, 3, "<b>Blouse</b>  1")),
             check=lambda t: t["relpath"][1] == "img/<script>alert(1)</script>.jpg" and t["label"][0] == "<b>Blouse</b>"),
    AnnoCase("empty_split", (_row(PART, 6, f"{NAMES[3]}  train"),), check=lambda t: set(t["split"]) == {"train", "valid"}),
    AnnoCase("class_of_one_image", (_row(IMG, 6, f"{NAMES[3]}  1"),),
             check=lambda t: t.groupby("label").size().to_dict() == {"Blouse": 3, "Jeans": 1}),
]


def make_deepfashion(root: Path, case: AnnoCase = AnnoCase("valid")) -> Path:
    """Write the base root with ``case``'s edits applied; every listed image inside the root exists."""
    files = _base_files()
    for edit in case.edits:
        edit(files)
    for name, lines in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        text = ("\ufeff" if case.bom else "") + case.newline.join(lines) + case.newline
        path.write_bytes(text.encode(case.encoding))
    for n, line in enumerate(files[IMG][2:]):
        name = line.rsplit(None, 1)[0] if len(line.split()) > 1 else line
        if name in case.absent:
            continue
        target = (root / name).resolve()
        if name in case.absent or not target.is_relative_to(root.resolve()) or name.startswith("/"):
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            _noise(color=(60 * n, 100, 150), seed=n).save(target, format="JPEG")
    return root


@pytest.mark.parametrize("case", ANNO_CASES, ids=lambda c: c.id)
def test_annotation_case(tmp_path, case):
    """datasets.load: a malformed row is one DatasetError line naming file and line; an oddity loads."""
    root = make_deepfashion(tmp_path / "df", case)
    if case.error:
        with pytest.raises(DatasetError) as info:
            datasets.load(root)
        message = str(info.value)
        assert re.search(case.error, message), message
        assert "\n" not in message and str(root) in message
    else:
        table = datasets.load(root)
        assert table.format == "deepfashion"
        assert case.check(table.frame), table.frame


@pytest.mark.parametrize("case", [c for c in ANNO_CASES if c.error], ids=lambda c: c.id)
def test_annotation_case_from_the_command_line(tmp_path, capsys, case):
    """`fashion summary`: exit code 2 and exactly one stderr line, the same message."""
    root = make_deepfashion(tmp_path / "df", case)
    assert cli.main(["summary", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fashion: error: "), err
    assert re.search(case.error, err), err


def test_measure_sim_bad_annotation_is_one_line_without_traceback(tmp_path):
    """The real script in a subprocess: exit code 2, one stderr line naming file and line."""
    root = make_deepfashion(tmp_path / "df", ANNO_CASES[0])
    proc = subprocess.run([sys.executable, str(REPO / "measure_sim.py"), "-q", "-i", str(root),
                           "--output_dir", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert re.search(r"^measure_sim\.py: error: .*" + IMG_LINE4 + "expected 2 columns", proc.stderr), proc.stderr


def test_empty_split_asked_for_is_one_line(salted_folder, tmp_path, capsys):
    """Asking measure_sim.py for the empty split gives one clear line (exit 2), not a traceback."""
    code = cli.measure_sim_main(["-i", str(salted_folder), "--output_dir", str(tmp_path / "out"), "--split", "test"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "'test'" in err, err


# --------------------------------------------------------------------------------------- end to end


def _assert_skips_listed(skipped: list[dict], root: Path, page: str | None = None) -> None:
    """``skipped`` names each damaged image once, with the reason of its table row; the page lists it."""
    by_path = {s["path"]: s["reason"] for s in skipped}
    expected = {str(root / "train" / "shirt" / c.name): c for c in BAD_IMAGES}
    assert set(by_path) == set(expected) and len(skipped) == len(BAD_IMAGES), sorted(by_path)
    for path, reason in by_path.items():
        assert re.search(expected[path].error, reason), (path, reason)
        if page is not None:
            assert html.escape(path) in page, path


def test_measure_sim_finishes_on_salted_folder_root(salted_folder, tmp_path):
    """retrieval.run (measure_sim.py's body) finishes, skips exactly the damaged images, counts them
    in metrics.json, marks them in the item table (ok False, reason, zero vector) and lists them in index.html."""
    from fashion.retrieval import MeasureConfig, run

    out = tmp_path / "run"
    result = run(MeasureConfig(input=str(salted_folder), output_dir=str(out), size=32, batch_size=8, k=3,
                               grids=2, num_workers=0))
    metrics = json.loads((out / "metrics.json").read_text())
    n_files = 3 * 3 + 3 * 2 + len(IMAGE_CASES) + 1
    assert metrics["n_images"] == n_files and metrics["n_skipped"] == len(BAD_IMAGES)
    assert metrics["n_ok"] == n_files - len(BAD_IMAGES) == metrics["n_queries"]
    page = (out / "index.html").read_text(encoding="utf-8")
    _assert_skips_listed(metrics["skipped"], salted_folder, page)
    assert {SINGLE, BAD_LABEL} <= set(metrics["per_label_precision"])
    from fashion.run.reader import read_items

    table = read_items(out)
    bad = table["path"].isin([s["path"] for s in metrics["skipped"]])
    assert (~table.loc[bad, "ok"]).all() and (table.loc[bad, "reason"] != "").all() and table.loc[~bad, "ok"].all()
    vectors = np.load(out / "embeddings.npy")
    assert (vectors[bad.to_numpy()] == 0).all()
    assert np.allclose(np.linalg.norm(vectors[~bad.to_numpy()], axis=1), 1, atol=1e-5)
    assert result.metrics["n_skipped"] == len(BAD_IMAGES)


def test_measure_sim_finishes_with_blank_images(tmp_path):
    """A blank (one-colour) picture is a valid image: the run finishes and either ranks it or skips and
    lists it (a network body can map it to an all-zero vector, which has no cosine direction)."""
    from fashion.retrieval import MeasureConfig, run

    root = tmp_path / "blank"
    for c, color in enumerate(((200, 40, 40), (40, 60, 200))):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(3):
            _noise(color=color, seed=10 * c + i).save(root / f"c{c}" / f"{i}.jpg")
    Image.new("RGB", (32, 32), "white").save(root / "c0" / "white.png")
    Image.new("L", (32, 32), 128).save(root / "c1" / "grey.jpg")
    result = run(MeasureConfig(input=str(root), output_dir=str(tmp_path / "run"), size=32, batch_size=4, k=2,
                               grids=0, num_workers=0))
    listed = {Path(s["path"]).name for s in result.metrics["skipped"]}
    assert result.metrics["n_ok"] + result.metrics["n_skipped"] == 8 and listed <= {"white.png", "grey.jpg"}


def make_salted_deepfashion(root: Path) -> Path:
    """A valid DeepFashion root whose img_2 is a zero-byte file and img_3 random bytes, plus two more
    good images per class: damage in images only."""
    extra = [f"img/Blouse_A/img_1{i}.jpg" for i in range(3)] + [f"img/Jeans_B/img_1{i}.jpg" for i in range(3, 6)]
    files = _base_files()
    files[IMG][0] = files[PART][0] = str(4 + len(extra))
    files[IMG] += [f"{n}  {1 + (i >= 3)}" for i, n in enumerate(extra)]
    files[PART] += [f"{n}  {('train', 'val', 'test')[i % 3]}" for i, n in enumerate(extra)]
    del files[BBOX]
    for name, lines in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("\n".join(lines) + "\n")
    for i, name in enumerate(NAMES + extra):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        _noise(color=(200, 40, 40) if "Blouse" in name else (40, 60, 200), seed=i).save(root / name)
    (root / NAMES[1]).write_bytes(b"")
    (root / NAMES[2]).write_bytes(np.random.default_rng(3).bytes(500))
    return root


@pytest.mark.slow
def test_measure_sim_script_finishes_on_salted_deepfashion_root(tmp_path):
    """The real script in a subprocess: exit 0; metrics.json counts and index.html lists both bad files."""
    root = make_salted_deepfashion(tmp_path / "df")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(REPO / "measure_sim.py"), "-i", str(root), "--output_dir", str(out),
                           "--size", "32", "--batch-size", "4", "-k", "3", "--grids", "2", "--workers", "0"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_images"] == 10 and metrics["n_skipped"] == 2
    page = (out / "index.html").read_text(encoding="utf-8")
    reasons = {Path(s["path"]).name: s["reason"] for s in metrics["skipped"]}
    assert reasons == {"img_00000002.jpg": "empty file (0 bytes)",
                       "img_00000003.jpg": reasons.get("img_00000003.jpg", "")}
    assert reasons["img_00000003.jpg"].startswith("cannot identify image file")
    for s in metrics["skipped"]:
        assert html.escape(s["path"]) in page


@pytest.mark.slow
def test_train_finishes_on_salted_folder_root(salted_folder, tmp_path, caplog):
    """fashion.training.train (tiny: 32 px, 1 epoch per stage) finishes; the log and metrics.json
    count the damaged images and metrics.json lists each with its reason."""
    from fashion import training

    items = datasets.load(salted_folder).frame
    config = training.TrainConfig(size=32, final_size=32, epochs=(1, 1, 1), lr=1e-3, batch_size=8, num_workers=0)
    with caplog.at_level(logging.INFO, logger="fashion"):
        training.train(items, config, tmp_path / "train")
    metrics = json.loads((tmp_path / "train" / "metrics.json").read_text())
    assert metrics["counts"]["skipped_images"] == len(BAD_IMAGES)
    _assert_skips_listed(metrics["skipped_images"], salted_folder)
    assert re.search(rf"skipping {len(BAD_IMAGES)} images that cannot be opened", caplog.text)
    assert (tmp_path / "train" / "model.safetensors").is_file()


# -------------------------------------------------------------- the file gate (issue 11, classes 4-6, 8)
# Every file is checked (os.stat, nothing opened) before it is read: FIFOs, symlink loops, over-long
# and undecodable names are refused with the file named, at once.


def _within(seconds: float, func):
    """``func()``'s result or exception, or a failure when it has not returned within ``seconds``
    (a read blocked on a FIFO: the test then opens the FIFO's write end to free the thread)."""
    import threading

    box: dict = {}

    def target():
        try:
            box["value"] = func()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    return thread, box


def _unblock(fifos) -> None:
    import os as _os

    for fifo in fifos:
        try:
            fd = _os.open(fifo, _os.O_WRONLY | _os.O_NONBLOCK)
            _os.close(fd)
        except OSError:
            pass


def _hostile_image(tmp_path: Path, kind: str) -> Path:
    import os as _os

    if kind == "fifo":
        path = tmp_path / "pipe.jpg"
        _os.mkfifo(path)
    elif kind == "symlink_loop":
        path = tmp_path / "loop.jpg"
        _os.symlink("loop.jpg", path)
    elif kind == "name_too_long":
        path = tmp_path / ("x" * 300 + ".jpg")
    elif kind == "directory":
        path = tmp_path / "folder.jpg"
        path.mkdir()
    return path


GATE_CASES = {"fifo": r"^is a FIFO \(named pipe\), not a regular file$",
              "symlink_loop": r"^symlink loop", "name_too_long": r"^the name is longer than the file system allows",
              "directory": r"^is a directory"}


@pytest.mark.parametrize("kind", sorted(GATE_CASES))
def test_open_image_refuses_what_is_not_a_regular_file_at_once(tmp_path, kind):
    """open_image on a FIFO returns within a second (it used to block forever in open()), and a symlink
    loop or an over-long name gets its own reason, not "truncated or corrupt image data"."""
    path = _hostile_image(tmp_path, kind)
    thread, box = _within(1.0, lambda: open_image(path))
    if thread.is_alive():
        _unblock([path])
        pytest.fail(f"open_image({kind}) still blocked after 1 s")
    error = box.get("error")
    assert isinstance(error, ImageError), box
    assert re.search(GATE_CASES[kind], error.reason), error.reason


def test_folder_root_with_hostile_files_skips_each_at_load_naming_it(tmp_path):
    """A FIFO, a symlink loop and a name that is not UTF-8 among a class folder's images: the dataset
    loads at once without them, each listed in the table's ``refused`` with its reason."""
    import os as _os

    root = tmp_path / "root"
    for label in ("a", "b"):
        for i in range(2):
            (root / label).mkdir(parents=True, exist_ok=True)
            _noise(seed=i).save(root / label / f"{i}.jpg")
    _os.mkfifo(root / "a" / "pipe.jpg")
    _os.symlink("loop.jpg", root / "a" / "loop.jpg")
    with open(_os.fsencode(root / "b") + b"/caf\xe9.jpg", "wb") as f:
        f.write((root / "a" / "0.jpg").read_bytes())
    thread, box = _within(5.0, lambda: datasets.load(root))
    if thread.is_alive():
        _unblock([root / "a" / "pipe.jpg"])
        pytest.fail("datasets.load blocked")
    assert "error" not in box, box.get("error")
    table = box["value"]
    assert sorted(table.frame["relpath"]) == ["a/0.jpg", "a/1.jpg", "b/0.jpg", "b/1.jpg"]
    refused = dict(table.refused)
    assert set(refused) == {"a/pipe.jpg", "a/loop.jpg", "b/caf\\xe9.jpg"}, refused
    assert refused["a/pipe.jpg"].startswith("is a FIFO")
    assert refused["a/loop.jpg"].startswith("symlink loop")
    assert refused["b/caf\\xe9.jpg"] == "the name is not valid UTF-8"


def test_measure_sim_lists_the_refused_files_and_finishes(tmp_path):
    """The whole run on that root: it ends, and metrics.json lists every refused file with its reason
    (a non-UTF-8 name used to kill the run after all the embedding, writing the item table)."""
    import os as _os

    root = tmp_path / "root"
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            _noise(seed=i, color=(40 + 150 * (label == "a"), 90, 90)).save(root / label / f"{i}.jpg")
    _os.mkfifo(root / "a" / "pipe.jpg")
    with open(_os.fsencode(root / "b") + b"/caf\xe9.jpg", "wb") as f:
        f.write((root / "a" / "0.jpg").read_bytes())
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "fashion", "-q", "neighbors", "-i", str(root), "--output_dir",
                           str(out), "--size", "32", "--grids", "1", "--workers", "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    reasons = {s["path"]: s["reason"] for s in metrics["skipped"]}
    assert reasons.get("a/pipe.jpg", "").startswith("is a FIFO"), reasons
    assert reasons.get("b/caf\\xe9.jpg") == "the name is not valid UTF-8", reasons
    assert metrics["n_ok"] == 6


def _peak_mb(path: Path) -> float:
    """Peak resident memory (MB) of a fresh process that opens ``path`` and resizes it to 224 px."""
    code = ("import resource, sys; from fashion.images import open_image; from fashion.resize import resize_image; "
            "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
            "resize_image(open_image(sys.argv[1]), 224); "
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return float(proc.stdout.strip().splitlines()[-1])


def test_sixteen_bit_giant_png_costs_no_more_memory_than_its_8_bit_twin(tmp_path):
    """A 9000×9900 16-bit PNG (under the pixel limit; ~170 KB on disk) used to peak at ~3 GB while
    its 8-bit twin took ~1.4 GB: the 16-bit scaling now works in bounded row blocks."""
    eight, sixteen = tmp_path / "eight.png", tmp_path / "sixteen.png"
    big_png(9000, 9900, bits=8)(eight)
    big_png(9000, 9900, bits=16)(sixteen)
    assert Image.open(sixteen).mode.startswith("I;16")
    peak8, peak16 = _peak_mb(eight), _peak_mb(sixteen)
    assert peak16 <= 1.25 * peak8 + 200, (peak8, peak16)


def test_decoded_size_limit_counts_bytes_not_pixels(tmp_path, monkeypatch):
    """A 32-bit integer image at 80% of the pixel limit decodes to more bytes than an RGB image at the
    limit: refused before decoding, with the decoded size named."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    path = tmp_path / "wide.tif"
    Image.fromarray(np.zeros((80, 100), dtype=np.int32)).save(path)  # mode I, 8,000 px, 32,000 bytes
    with pytest.raises(ImageError, match=r"too large: 100x80 pixels of mode I decode to 32,000 bytes"):
        open_image(path)


# ------------------------------------------------ annotation files and listed images that are not files


def test_nul_byte_in_a_listed_name_names_the_file_and_line(tmp_path):
    """It used to be "embedded null byte" with no file or line."""
    root = make_deepfashion(tmp_path / "df")
    for name in (IMG, BBOX, PART):
        path = root / name
        path.write_text(path.read_text().replace(NAMES[1], "img/Blouse_A/img\x002.jpg"))
    with pytest.raises(DatasetError, match=IMG_LINE4 + r"image name 'img/Blouse_A/img\\x002\.jpg': "
                                           r"the name holds a NUL byte"):
        datasets.load(root)


NOT_FILES = {"fifo": r"is a FIFO \(named pipe\), not a regular file", "directory": r"is a directory, not a regular file",
             "symlink_loop": r"symlink loop"}


def _make_not_file(path: Path, kind: str) -> None:
    import os as _os

    if path.exists() or path.is_symlink():
        path.unlink()
    if kind == "fifo":
        _os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        _os.symlink(path.name, path)


@pytest.mark.parametrize("kind", sorted(NOT_FILES))
@pytest.mark.parametrize("which", [CLOTH, IMG, BBOX, PART])
def test_annotation_file_that_is_not_a_file_is_one_line(tmp_path, which, kind):
    """An annotation "file" that is a FIFO (used to hang), a directory (a traceback, or silently taken
    for no file) or a symlink loop: one DatasetError line naming it, within a second."""
    root = make_deepfashion(tmp_path / "df")
    path = root / which
    _make_not_file(path, kind)
    thread, box = _within(1.0, lambda: datasets.load(root))
    if thread.is_alive():
        _unblock([path])
        pytest.fail(f"datasets.load blocked on a {kind} {which}")
    error = box.get("error")
    assert isinstance(error, DatasetError), box
    assert str(error).startswith(f"{path}: annotation file ") and re.search(NOT_FILES[kind], str(error)), error


@pytest.mark.parametrize("kind", sorted(NOT_FILES))
def test_listed_image_that_is_not_a_file_is_refused_at_load(tmp_path, kind):
    """A listed image that is a FIFO, a directory or a symlink loop: dropped at load time and listed in
    the table's ``refused`` with its reason (not "file not found", not a traceback, never opened)."""
    root = make_deepfashion(tmp_path / "df")
    _make_not_file(root / NAMES[1], kind)
    thread, box = _within(2.0, lambda: datasets.load(root))
    if thread.is_alive():
        _unblock([root / NAMES[1]])
        pytest.fail("datasets.load blocked")
    assert "error" not in box, box.get("error")
    table = box["value"]
    assert list(table.frame["relpath"]) == [NAMES[0], NAMES[2], NAMES[3]]
    (refused,) = table.refused
    assert refused[0] == NAMES[1] and re.search(NOT_FILES[kind], refused[1]), refused


# ------------------------------------------------- a broken model is named as the cause (issue 11, class 7)


def _broken_embedder(monkeypatch, tmp_path, how: str):
    """Embedder.create, then broken the way a bad model.json or weights file breaks it."""
    import torch

    from fashion.embedding import Embedder

    real = Embedder.create.__func__
    model_dir = tmp_path / "model"

    def create(cls, *args, **kwargs):
        embedder = real(cls, *args, **kwargs)
        embedder.model_dir = str(model_dir)
        if how == "std_zero":
            embedder.std = (0.0, 0.0, 0.0)
        elif how == "nan_weights":
            with torch.no_grad():
                next(embedder._body.parameters()).fill_(float("nan"))
        elif how == "constant":
            dim = embedder.dim
            embedder.forward = lambda images: torch.full((len(images), dim), dim ** -0.5)
        return embedder

    monkeypatch.setattr(Embedder, "create", classmethod(create))
    return model_dir


@pytest.mark.parametrize("how, says", [("std_zero", "non-finite"), ("nan_weights", "non-finite"),
                                       ("constant", "the same vector for every image")])
def test_broken_model_is_named_not_blamed_on_the_images(tmp_path, monkeypatch, capsys, how, says):
    """A model whose std is 0 or whose weights are NaN used to end with "not enough usable images to
    search: 0 queries"; a model giving one vector for every image silently gave random neighbours."""
    root = tmp_path / "root"
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(3):
            _noise(seed=i + 7 * (label == "a"), color=(40 + 150 * (label == "a"), 90, 90)).save(root / label / f"{i}.jpg")
    model_dir = _broken_embedder(monkeypatch, tmp_path, how)
    status = cli.measure_sim_main(["-q", "-i", str(root), "--output_dir", str(tmp_path / "out"), "--size", "32",
                                   "--grids", "0", "--workers", "0"])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert says in err and str(model_dir) in err and "usable images" not in err, err


@pytest.mark.parametrize("argv", [["neighbors", "--output_dir", "OUT", "--size", "100000"],
                                  ["train", "DATA", "--output_dir", "OUT", "--final-size", "100000"],
                                  ["neighbors", "--output_dir", "OUT", "--size", "0"]])
def test_absurd_image_size_on_the_command_line_is_refused_by_the_parser(tmp_path, capsys, argv):
    """`--size 100000` asked for a 30 GB input tensor (MemoryError traceback or the OOM killer): the
    option's own validation refuses it before anything is loaded."""
    argv = [str(tmp_path / a) if a in ("OUT", "DATA") else a for a in argv]
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in err
    assert "image size must be an integer from 8 to 4096 pixels" in err, err


# --------------------------------------------------- hostile cases beyond the list (issue 11, 7)


def test_extreme_aspect_strip_is_resized_in_bounded_memory(tmp_path):
    """A 1,000,000 × 1 px strip (under the pixel limit, a few KB on disk) used to be resized to 64
    million × 64 px before the centre crop (a 12 GB intermediate); only the central part is resized now."""
    from fashion.resize import resize_image

    path = tmp_path / "strip.png"
    Image.new("RGB", (1_000_000, 1), (200, 10, 10)).save(path)
    thread, box = _within(20.0, lambda: resize_image(open_image(path), 64))
    assert not thread.is_alive() and "error" not in box, box.get("error")
    pixels = box["value"]
    assert pixels.shape == (64, 64, 3) and np.abs(pixels[32, 32].astype(int) - (200, 10, 10)).max() <= 2


def test_a_device_behind_a_symlink_is_refused_unread(tmp_path):
    """x.jpg → /dev/zero would be read forever (an endless file): refused from its stat."""
    path = tmp_path / "zero.jpg"
    path.symlink_to("/dev/zero")
    with pytest.raises(ImageError, match="is a character device, not a regular file"):
        open_image(path)


def test_a_socket_as_an_image_is_refused(tmp_path):
    import socket

    path = tmp_path / "s.jpg"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        with pytest.raises(ImageError, match="is a socket, not a regular file"):
            open_image(path)


def test_a_fifo_swapped_in_after_the_check_is_still_refused(tmp_path, monkeypatch):
    """The gate's stat passes a regular file; a FIFO put in its place before the open is opened
    non-blocking and refused from the descriptor's own fstat (no hang, no read)."""
    import os as _os

    from fashion import filegate

    path = tmp_path / "swap.jpg"
    _os.mkfifo(path)
    monkeypatch.setattr(filegate, "check", lambda *a, **k: None)  # the check saw a regular file
    thread, box = _within(1.0, lambda: open_image(path))
    if thread.is_alive():
        _unblock([path])
        pytest.fail("blocked on the swapped-in FIFO")
    assert isinstance(box.get("error"), ImageError) and box["error"].reason.startswith("is a FIFO"), box


@pytest.mark.parametrize("what", ["image", "annotation"])
def test_huge_files_are_refused_before_reading(tmp_path, what):
    """A sparse 3 GB image or annotation list (nothing on disk) is refused from its size, unread."""
    if what == "image":
        path = tmp_path / "huge.jpg"
        with open(path, "wb") as f:
            f.truncate(3 << 30)
        with pytest.raises(ImageError, match=r"too large: 3,221,225,472 bytes \(the limit for images is 1,073,741,824\)"):
            open_image(path)
    else:
        root = make_deepfashion(tmp_path / "df")
        with open(root / IMG, "r+b") as f:
            f.truncate(3 << 30)
        with pytest.raises(DatasetError, match=r"list_category_img\.txt: annotation file too large: 3,221,225,472 bytes"):
            datasets.load(root)


def test_nul_byte_in_a_photo_name_is_named(tmp_path):
    with pytest.raises(ImageError) as info:
        open_image(str(tmp_path / "a\0b.jpg"))
    assert info.value.reason == "the name holds a NUL byte" and "a\\x00b.jpg" in str(info.value)
