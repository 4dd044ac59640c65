"""fashion.datasets: every format, auto-detection, and a one-line file:line error for every bad row."""

from __future__ import annotations

import os
import time

import pytest

from fashion.datasets import FORMATS, ItemTable, describe, detect_format, load, summary
from fashion.errors import DatasetError

from factories import CATEGORIES, make_deepfashion, make_inshop, write_list
from factories import DEEPFASHION_IMAGES as IMAGES
from factories import INSHOP_ROWS as INSHOP
from factories import tiny_jpeg as touch_image

# ------------------------------------------------------------------------------------- DeepFashion


@pytest.mark.parametrize("anno", ["Anno", "Anno_coarse"])
def test_deepfashion(tmp_path, anno):
    root = make_deepfashion(tmp_path / "df", anno=anno)
    table = load(root)
    items = table.frame
    assert list(items.columns) == ["path", "relpath", "label", "split", "category_id", "category_type"]
    assert list(items["relpath"]) == [r[0] for r in IMAGES]
    assert list(items["label"]) == ["Blouse", "Blouse", "Jeans", "Dress"]
    assert list(items["split"]) == ["train", "valid", "test", "train"]
    assert list(items["category_id"]) == [1, 1, 2, 3]
    assert list(items["category_type"]) == [1, 1, 2, 3]
    assert all(os.path.isabs(p) and os.path.isfile(p) for p in items["path"])
    assert isinstance(table, ItemTable) and len(table) == 4
    assert (table.format, table.root, table.missing, table.ignored, table.refused) == (
        "deepfashion", str(root.resolve()), (), (), ())
    assert detect_format(root) == "deepfashion"


def test_deepfashion_with_bbox(tmp_path):
    boxes = [(r[0], 1, 2, 30, 40) for r in IMAGES[:3]]
    items = load(make_deepfashion(tmp_path, bbox=boxes)).frame
    assert list(items.columns)[-1] == "bbox"
    assert items["bbox"].tolist() == [(1, 2, 30, 40)] * 3 + [None]


def test_deepfashion_without_partition(tmp_path):
    items = load(make_deepfashion(tmp_path, partition=False)).frame
    assert set(items["split"]) == {""}


def test_bom_crlf_and_spaces_in_names(tmp_path):
    images = IMAGES + [("img/My Folder/photo one.jpg", 2, "test")]
    root = make_deepfashion(tmp_path, images=images, newline="\r\n", bom=True)
    items = load(root).frame
    assert items["relpath"].iloc[-1] == "img/My Folder/photo one.jpg"
    assert items["label"].iloc[-1] == "Jeans"


def test_category_names_may_hold_spaces(tmp_path):
    categories = [("Sheer Blouse", 1), ("Jeans", 2), ("Dress", 3)]
    assert load(make_deepfashion(tmp_path, categories=categories)).frame["label"].iloc[0] == "Sheer Blouse"


def test_partition_extra_rows_ignored(tmp_path):
    root = make_deepfashion(tmp_path)
    write_list(root / "Anno" / "list_category_img.txt", "image_name  category_label", [r[:2] for r in IMAGES[:2]])
    assert len(load(root)) == 2


# ----------------------------------------------------------------------------------------- In-shop


@pytest.mark.parametrize("in_eval", [False, True])
def test_inshop(tmp_path, in_eval):
    root = make_inshop(tmp_path, in_eval=in_eval)
    assert detect_format(root) == "inshop"
    items = load(root).frame
    assert list(items.columns) == ["path", "relpath", "label", "split", "item_id"]
    assert list(items["label"]) == ["Dresses", "Dresses", "Denim"]
    assert list(items["split"]) == ["train", "query", "gallery"]
    assert list(items["item_id"]) == ["id_00000002", "id_00000002", "id_00000080"]


def test_inshop_bbox(tmp_path):
    root = make_inshop(tmp_path)
    header = "image_name  clothes_type  pose_type  x_1  y_1  x_2  y_2"
    write_list(root / "Anno" / "list_bbox_inshop.txt", header, [(INSHOP[0][0], 1, 1, 5, 6, 50, 60)])
    assert load(root).frame["bbox"].tolist() == [(5, 6, 50, 60), None, None]


def test_inshop_label_without_item_folder(tmp_path):
    root = make_inshop(tmp_path, rows=[("img/Tops/item7/a.jpg", "7", "train"), ("b.jpg", "8", "gallery")])
    with pytest.raises(DatasetError, match=r"list_eval_partition\.txt:4: cannot take a category"):
        load(root)


def test_inshop_unknown_split(tmp_path):
    root = make_inshop(tmp_path, rows=INSHOP[:2] + [("img/MEN/Denim/id_1/a.jpg", "id_1", "test")])
    with pytest.raises(DatasetError, match=r"list_eval_partition\.txt:5: unknown split 'test'"):
        load(root)


# ----------------------------------------------------------------------------------------- folders


def test_folder_without_splits(tmp_path):
    for name in ("shirt/b.jpg", "shirt/a.PNG", "hat/x.jpeg", "hat/sub/y.jpg"):
        touch_image(tmp_path / name)
    for junk in ("shirt/.DS_Store", "shirt/Thumbs.db", "hat/notes.txt", "hat/.hidden.jpg", "README.txt"):
        (tmp_path / junk).write_text("x")
    (tmp_path / ".cache").mkdir()
    touch_image(tmp_path / ".cache" / "z.jpg")
    assert detect_format(tmp_path) == "folder"
    table = load(tmp_path)
    items = table.frame
    assert list(items.columns) == ["path", "relpath", "label", "split"]
    assert list(items["relpath"]) == ["hat/sub/y.jpg", "hat/x.jpeg", "shirt/a.PNG", "shirt/b.jpg"]
    assert list(items["label"]) == ["hat", "hat", "shirt", "shirt"]
    assert set(items["split"]) == {""}
    assert table.ignored == ("hat/.hidden.jpg", "hat/notes.txt", "shirt/.DS_Store", "shirt/Thumbs.db")


@pytest.mark.parametrize("valid_name", ["valid", "validation", "val"])
def test_folder_with_splits(tmp_path, valid_name):
    for name in ("train/shirt/a.jpg", "train/hat/b.jpg", f"{valid_name}/shirt/c.jpg", "test/hat/d.jpg"):
        touch_image(tmp_path / name)
    touch_image(tmp_path / "train" / "stray.jpg")  # not in a class folder
    items = load(tmp_path, format="folder").frame
    assert dict(zip(items["relpath"], items["split"])) == {
        "test/hat/d.jpg": "test", "train/hat/b.jpg": "train", "train/shirt/a.jpg": "train",
        f"{valid_name}/shirt/c.jpg": "valid",
    }
    assert dict(zip(items["relpath"], items["label"]))["test/hat/d.jpg"] == "hat"


def test_folder_unicode_html_names_empty_split_and_single_image(tmp_path):
    touch_image(tmp_path / "train" / "Käse <script>alert(1)" / "фото 1.jpg")
    touch_image(tmp_path / "train" / "hat" / "a.jpg")
    touch_image(tmp_path / "test" / "hat" / "b.jpg")
    (tmp_path / "valid").mkdir()  # an empty split
    items = load(tmp_path).frame
    assert sorted(items["label"]) == ["Käse <script>alert(1)", "hat", "hat"]
    assert "train/Käse <script>alert(1)/фото 1.jpg" in set(items["relpath"])
    assert set(items["split"]) == {"train", "test"}


def test_deepfashion_unicode_names(tmp_path):
    images = [("img/Blúsa/ünï <b>.jpg", 1, "train")]
    items = load(make_deepfashion(tmp_path, images=images, categories=[("Blúsa <i>", 1)])).frame
    assert items["label"].tolist() == ["Blúsa <i>"] and items["relpath"].tolist() == ["img/Blúsa/ünï <b>.jpg"]


def test_folder_empty_is_an_error(tmp_path):
    (tmp_path / "shirt").mkdir()
    (tmp_path / "shirt" / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match="empty dataset"):
        load(tmp_path, format="folder")


# ------------------------------------------------------------------------------------- detection


def test_detect_nothing(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match=f"{tmp_path}: no known dataset layout"):
        detect_format(tmp_path)


def test_root_must_exist(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatasetError, match="not a directory"):
        detect_format(tmp_path / "file")


def test_bad_arguments(tmp_path):
    assert FORMATS == ("deepfashion", "inshop", "folder")
    with pytest.raises(ValueError, match="format"):
        load(tmp_path, format="coco")
    with pytest.raises(ValueError, match="missing"):
        load(tmp_path, missing="ignore")


def test_forced_format_without_its_files(tmp_path):
    touch_image(tmp_path / "shirt" / "a.jpg")
    with pytest.raises(DatasetError, match="list_category_img"):
        load(tmp_path, format="deepfashion")
    with pytest.raises(DatasetError, match="list_eval_partition"):
        load(tmp_path, format="inshop")


# ---------------------------------------------------------------------------------- malformed rows

IMG = r"list_category_img\.txt"
PART = r"list_eval_partition\.txt"
CLOTH = r"list_category_cloth\.txt"
BBOX = r"list_bbox\.txt"


def _img_rows(*extra):
    return [r[:2] for r in IMAGES] + list(extra)


MALFORMED = {
    # case: (keyword arguments for make_deepfashion, file, line, message)
    "count too big": (dict(count=5), IMG, 1, "the count line says 5 rows, found 4"),
    "count too small": (dict(count=3), IMG, 1, "the count line says 3 rows, found 4"),
    "count not a number": (dict(count="four"), IMG, 1, "expected the number of rows on the first line, got 'four'"),
    "count negative": (dict(count=-4), IMG, 1, "expected the number of rows"),
    "too few columns": (dict(images=IMAGES[:2] + ["img/Skinny_Jeans/img_00000001.jpg"]), IMG, 5, "expected 2 columns"),
    "too many columns": (dict(images=IMAGES[:1] + ["img/Sheer_Blouse/img_00000002.jpg 1 7"]), IMG, 4,
                         "expected 2 columns"),
    "non-numeric label": (dict(images=IMAGES[:1] + ["img/Sheer_Blouse/img_00000002.jpg  one"]), IMG, 4,
                          "expected an integer category_label, got 'one'"),
    "category id too big": (dict(images=IMAGES[:3] + ["img/Maxi_Dress/img_00000001.jpg 4"]), IMG, 6,
                            r"unknown category id 4, list_category_cloth\.txt defines 1\.\.3"),
    "category id zero": (dict(images=["img/Maxi_Dress/img_00000001.jpg 0"]), IMG, 3, "unknown category id 0"),
    "duplicate image": (dict(images=IMAGES + [("img/Sheer_Blouse/img_00000002.jpg", 1, "val")]), IMG, 7,
                        r"duplicate image .* \(first on line 4\)"),
    "unknown split": (dict(images=IMAGES[:2] + [("img/Skinny_Jeans/img_00000001.jpg", 2, "training")]), PART, 5,
                      "unknown split 'training', expected one of test, train, val"),
    "category type": (dict(categories=CATEGORIES + [("Cape", 4)]), CLOTH, 6, "category_type must be 1, 2 or 3"),
    "category type text": (dict(categories=CATEGORIES + [("Cape", "full")]), CLOTH, 6,
                           "expected an integer category_type"),
    "bbox x2 <= x1": (dict(bbox=[(IMAGES[0][0], 1, 2, 30, 40), (IMAGES[1][0], 30, 2, 30, 40)]), BBOX, 4,
                      r"bad bbox \(30, 2, 30, 40\)"),
    "bbox negative": (dict(bbox=[(IMAGES[0][0], -1, 2, 30, 40)]), BBOX, 3, "bad bbox"),
    "bbox non-numeric": (dict(bbox=[(IMAGES[0][0], 1, 2, "x", 40)]), BBOX, 3, "expected an integer x_2"),
    "bbox too few columns": (dict(bbox=[(IMAGES[0][0], 1, 2, 40)]), BBOX, 3, "expected 5 columns"),
    "parent escape": (dict(images=IMAGES + [("img/../../outside.jpg", 1, "train")], image=None), IMG, 7,
                      "image path 'img/../../outside.jpg' escapes the dataset root"),
    "dotdot escape": (dict(images=[("../outside.jpg", 1, "train")], image=None), IMG, 3,
                      "image path '../outside.jpg' escapes the dataset root"),
    "absolute path": (dict(images=[("/etc/passwd.jpg", 1, "train")], image=None), IMG, 3, "absolute image path"),
    "windows absolute path": (dict(images=[("C:\\data\\a.jpg", 1, "train")], image=None), IMG, 3,
                              "absolute image path"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_rows_name_file_and_line(tmp_path, case):
    kwargs, filename, line, message = MALFORMED[case]
    root = make_deepfashion(tmp_path / "root", **kwargs)
    with pytest.raises(DatasetError, match=rf"{filename}:{line}: {message}") as info:
        load(root)
    assert info.value.line == line
    assert "\n" not in str(info.value)


def test_missing_header_line(tmp_path):
    root = make_deepfashion(tmp_path)
    (root / "Anno" / "list_category_img.txt").write_text("1\nimg/Maxi_Dress/img_00000001.jpg 3 x\n")
    with pytest.raises(DatasetError, match=rf"{IMG}:2: expected the header line 'image_name category_label'"):
        load(root)


def test_image_absent_from_partition(tmp_path):
    root = make_deepfashion(tmp_path)
    write_list(root / "Eval" / "list_eval_partition.txt", "image_name  evaluation_status", [(IMAGES[0][0], "train")])
    with pytest.raises(DatasetError, match=rf"{IMG}:4: image .* has no split in .*list_eval_partition\.txt"):
        load(root)


@pytest.mark.parametrize("name", ["img/link.jpg", "img/linkdir/secret.jpg"])
def test_symlink_escaping_root(tmp_path, name):
    outside = touch_image(tmp_path / "outside" / "secret.jpg")
    root = make_deepfashion(tmp_path / "root", images=IMAGES + [(name, 1, "train")], image=None)
    (root / "img").mkdir()
    (root / "img" / "link.jpg").symlink_to(outside)
    (root / "img" / "linkdir").symlink_to(outside.parent, target_is_directory=True)
    with pytest.raises(DatasetError, match=rf"{IMG}:7: image path '{name}' escapes the dataset root"):
        load(root, missing="skip")


def test_symlink_inside_root_is_fine(tmp_path):
    root = make_deepfashion(tmp_path)
    (root / "img" / "alias.jpg").symlink_to(root / IMAGES[0][0])
    write_list(root / "Anno" / "list_category_img.txt", "image_name  category_label", _img_rows(("img/alias.jpg", 2)))
    write_list(root / "Eval" / "list_eval_partition.txt", "image_name  evaluation_status",
               [(r[0], r[2]) for r in IMAGES] + [("img/alias.jpg", "test")])
    assert load(root).frame["relpath"].iloc[-1] == "img/alias.jpg"


def test_not_utf8(tmp_path):
    root = make_deepfashion(tmp_path)
    path = root / "Anno" / "list_category_img.txt"
    path.write_bytes(path.read_bytes().replace(b"Sheer_Blouse/img_00000002", b"Sheer_Blouse/img_\xff0000002"))
    with pytest.raises(DatasetError, match=rf"{IMG}:4: not UTF-8"):
        load(root)


# ------------------------------------------------------------------------------- missing / empty


def test_missing_images_error_lists_count_and_first(tmp_path):
    root = make_deepfashion(tmp_path)
    for name in (IMAGES[1][0], IMAGES[3][0]):
        (root / name).unlink()
    with pytest.raises(DatasetError, match=rf"{IMG}: 2 of 4 listed images do not exist: "
                                           r"img/Sheer_Blouse/img_00000002\.jpg \(line 4\), .*missing='skip'"):
        load(root)


def test_missing_images_skipped(tmp_path, caplog):
    root = make_deepfashion(tmp_path)
    (root / IMAGES[1][0]).unlink()
    table = load(root, missing="skip")
    assert list(table.frame["relpath"]) == [IMAGES[0][0], IMAGES[2][0], IMAGES[3][0]]
    assert table.missing == (IMAGES[1][0],)
    assert "skipping 1 listed images" in caplog.text
    assert "missing (skipped): 1" in describe(table)


def test_all_missing_is_empty(tmp_path):
    root = make_deepfashion(tmp_path, image=None)
    with pytest.raises(DatasetError, match="empty dataset: all listed images are missing"):
        load(root, missing="skip")


def test_zero_rows_is_empty(tmp_path):
    root = make_deepfashion(tmp_path, images=[], partition=False)
    with pytest.raises(DatasetError, match=rf"{IMG}: empty dataset"):
        load(root)


# ------------------------------------------------------------------------------ summary / describe


def test_summary_and_describe(tmp_path):
    items = load(make_deepfashion(tmp_path))
    counts = summary(items.frame)
    assert list(counts.columns) == ["train", "valid", "test", "total"]
    assert counts.loc["Blouse"].tolist() == [1, 1, 0, 2]
    assert counts.loc["total", "total"] == 4
    text = describe(items)
    assert "format: deepfashion" in text and "images: 4 in 3 labels" in text and "train 2" in text


def test_summary_unsplit(tmp_path):
    touch_image(tmp_path / "hat" / "a.jpg")
    assert list(summary(load(tmp_path).frame).columns) == ["unsplit", "total"]


# ------------------------------------------------------------------------------------------ scale


@pytest.mark.parametrize("n", [50_000, pytest.param(289_222, marks=pytest.mark.slow)])  # 289,222: the real list
def test_large_annotation_loads_in_seconds(tmp_path, n):
    """Rows in folders of 50 images, parsed and checked (one lstat each) in seconds."""
    names = [f"img/Item_{i // 50:05d}/img_{i % 50 + 1:08d}.jpg" for i in range(n)]
    anno = tmp_path / "Anno"
    write_list(anno / "list_category_cloth.txt", "category_name  category_type", CATEGORIES)
    labels = [f"{m}   {i % 3 + 1}" for i, m in enumerate(names)]
    write_list(anno / "list_category_img.txt", "image_name  category_label", labels)
    splits = ("train", "val", "test")
    write_list(tmp_path / "Eval" / "list_eval_partition.txt", "image_name  evaluation_status",
               [f"{m}   {splits[i % 3]}" for i, m in enumerate(names)])
    touch_image(tmp_path / names[0])  # the others are absent: every row still gets its lstat
    # CPU time, not wall time: the bound is on the work the loader does (a quadratic join or a read per row
    # would blow it), and wall time on shared CI cores measures the neighbours' jobs as well
    start = time.process_time()
    items = load(tmp_path, missing="skip")
    elapsed = time.process_time() - start
    assert len(items) == 1 and len(items.missing) == n - 1
    assert elapsed < n / 20_000, f"load of {n} rows took {elapsed:.1f}s of CPU"
