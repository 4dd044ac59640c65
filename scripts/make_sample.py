#!/usr/bin/env python
"""Rebuild the sample the package ships (``fashion/data/sample``) from clothing-dataset-small.

A maintainer's tool, not part of the library: nothing at run time builds a sample, every entry point
only reads the bundled one (:func:`fashion.sample.sample_root`)::

    python scripts/make_sample.py /path/to/clothing-dataset-small fashion/data/sample

The sample is laid out exactly as a DeepFashion Category & Attribute Prediction root::

    img/<Class>/img_00000001.jpg ...
    Anno/list_category_cloth.txt  Anno/list_category_img.txt  Eval/list_eval_partition.txt
    README.md  SOURCE.md  LICENSE

made from clothing-dataset-small (CC0, 10 classes, ``{train,validation,test}/<class>/*.jpg``) by
:func:`build_sample`: a seeded selection per class from the source's ``test`` split only (photos the
bundled clothing model never saw, so the quick start's figures are on unseen photos), divided into the
sample's own train / val / test statuses, EXIF orientation applied, long side reduced to 300 px,
re-encoded as JPEG. ``--source all`` draws each status from the source split of that name instead.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import random
import shutil
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from fashion.atomic import write_text
from fashion.errors import ConfigError, FashionError, ImageError
from fashion.images import IMAGE_EXTENSIONS, open_image

log = logging.getLogger("make_sample")

JPEG_QUALITY = 80
# clothing-dataset-small class → (DeepFashion-style category name, category_type).
# 1 upper-body, 2 lower-body, 3 full-body. Hats and shoes are neither; by convention hats count as
# upper-body (worn above the waist) and shoes as lower-body (worn below it).
CATEGORIES: dict[str, tuple[str, int]] = {
    "hat": ("Hat", 1),
    "longsleeve": ("Longsleeve", 1),
    "outwear": ("Outwear", 1),
    "shirt": ("Shirt", 1),
    "t-shirt": ("T-Shirt", 1),
    "pants": ("Pants", 2),
    "shoes": ("Shoes", 2),
    "shorts": ("Shorts", 2),
    "skirt": ("Skirt", 2),
    "dress": ("Dress", 3),
}
# source split folder → DeepFashion evaluation_status
_SPLITS = (("train", "train"), ("validation", "val"), ("test", "test"))
SOURCES = ("test", "train", "validation", "all")  # build_sample's source: one split, or each from its own
_TYPE_NAMES = {1: "upper-body", 2: "lower-body", 3: "full-body"}


@dataclass(frozen=True)
class _Entry:
    """One sample image: where it came from and what it becomes."""

    source: Path  # the original file
    relpath: str  # img/<Class>/img_00000001.jpg
    category: str
    status: str  # train / val / test


def build_sample(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    per_class: int = 80,  # more than any class of the test split has (shoes: 73): all of its 372 photos
    long_side: int = 300,
    seed: int = 0,
    source: str = "test",
) -> Path:
    """Build the DeepFashion-style sample at ``dst`` from clothing-dataset-small at ``src``; return ``dst``.

    ``source`` names one source split (``train``, ``validation`` or ``test``): per class, ``per_class``
    images of it (all of them where it has fewer), chosen by a seeded shuffle, about 2/3 given status
    "train" and 1/6 each "val" and "test". ``source="all"``: about 2/3 of ``per_class`` come from
    ``train`` and 1/6 each from ``validation`` (status "val") and ``test``. Unreadable images are
    skipped. ``dst`` is
    built beside itself and swapped in at the end, so it is never half-written; an existing ``dst``
    is replaced only if it looks like a sample.
    """
    src, dst = Path(src).expanduser().resolve(), Path(dst).expanduser().resolve()
    if per_class < 3:
        raise ConfigError(f"per_class must be at least 3 (one image per split), got {per_class}")
    if long_side < 16:
        raise ConfigError(f"long_side must be at least 16 pixels, got {long_side}")
    if source not in SOURCES:
        raise ConfigError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    classes = _source_classes(src)
    _refuse_foreign(dst)
    building = dst.with_name(f".{dst.name}.building")
    shutil.rmtree(building, ignore_errors=True)
    try:
        entries = _select(src, classes, per_class, seed, building, long_side, source)
        _write_annotations(building, entries)
        _write_docs(src, building, entries, per_class, long_side, seed, source)
        swap_in(building, dst)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    log.info("wrote %d images in %d classes to %s", len(entries), len(classes), dst)
    return dst


def _source_classes(src: Path) -> list[str]:
    """Class folders present in every split of ``src``, in CATEGORIES order then alphabetical."""
    missing = [name for name, _ in _SPLITS if not (src / name).is_dir()]
    if missing:
        raise FashionError(f"{src}: not clothing-dataset-small, missing folders {', '.join(missing)}")
    per_split = [{p.name for p in (src / name).iterdir() if p.is_dir()} for name, _ in _SPLITS]
    classes = set.intersection(*per_split)
    if not classes:
        raise FashionError(f"{src}: no class folder is present in train, validation and test")
    known = [c for c in CATEGORIES if c in classes]
    return known + sorted(classes - set(known))


def _category(name: str) -> tuple[str, int]:
    """(category name, type) of a source class; unknown classes get a title-cased name and type 1."""
    if name not in CATEGORIES:
        log.warning("class %r has no known category type; using 1 (upper-body)", name)
    return CATEGORIES.get(name, ("-".join(p.capitalize() for p in name.split("-")), 1))


def _quota(n: int) -> dict[str, int]:
    """Images per status of a class of ``n``: about 2/3 train, 1/6 each val and test."""
    n_held = max(1, round(n / 6))
    return {"train": n - 2 * n_held, "val": n_held, "test": n_held}


def _select(src: Path, classes: list[str], per_class: int, seed: int, out: Path, long_side: int,
            source: str = "test") -> list[_Entry]:
    """Pick, resize and write the images of every class; return them in annotation order."""
    # annotation order as in DeepFashion: by category id, then file number
    order = sorted(classes, key=lambda c: (_category(c)[1], _category(c)[0]))
    entries: list[_Entry] = []
    for cls in order:
        category = _category(cls)[0]
        if source == "all":
            quota = _quota(per_class)
            picks = [(status, pick) for folder, status in _SPLITS
                     for pick in _pick(src / folder / cls, quota[status], f"{seed}/{folder}/{cls}", long_side)]
        else:
            count = min(per_class, len(_image_files(src / source / cls)))
            chosen = _pick(src / source / cls, count, f"{seed}/{source}/{cls}", long_side, exact=False)
            statuses = [status for _, status in _SPLITS for _ in range(_quota(len(chosen))[status])]
            picks = list(zip(statuses, chosen))
        for number, (status, (path, image)) in enumerate(picks, start=1):
            relpath = f"img/{category}/img_{number:08d}.jpg"
            _save_jpeg(image, out / relpath)
            entries.append(_Entry(path, relpath, category, status))
    return entries


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))


def _pick(folder: Path, count: int, seed: str, long_side: int, exact: bool = True) -> list[tuple[Path, object]]:
    """``count`` readable images of ``folder`` in a seeded random order, resized: [(path, image)];
    fewer than ``count`` is an error only when ``exact``."""
    files = _image_files(folder)
    random.Random(seed).shuffle(files)
    chosen = []
    for path in files:
        if len(chosen) == count:
            break
        try:
            chosen.append((path, _shrink(open_image(path), long_side)))
        except ImageError as exc:
            log.warning("skipping %s", exc)
    if len(chosen) < (count if exact else 3):  # a class needs one photo for each status
        raise FashionError(f"{folder}: only {len(chosen)} readable images, need {count if exact else 3}")
    return chosen


def _shrink(image, long_side: int):
    """Resize a PIL image so its long side is at most ``long_side`` pixels."""
    from PIL import Image

    scale = long_side / max(image.size)
    if scale >= 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _save_jpeg(image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="JPEG", quality=JPEG_QUALITY, optimize=True, progressive=True)


def _list_file(header: str, rows: list[tuple[str, object]], width: int) -> str:
    """A DeepFashion list file: count line, header line, then names padded with spaces to ``width``."""
    width = max(width, max((len(name) for name, _ in rows), default=0) + 2)
    body = "".join(f"{name:<{width}}{value}\n" for name, value in rows)
    return f"{len(rows)}\n{header}\n{body}"


def _write_annotations(out: Path, entries: list[_Entry]) -> None:
    """Anno/list_category_cloth.txt, Anno/list_category_img.txt and Eval/list_eval_partition.txt."""
    categories = list(dict.fromkeys(e.category for e in entries))
    types = {name: kind for name, kind in CATEGORIES.values()}
    ids = {name: i for i, name in enumerate(categories, start=1)}
    cloth = [(name, types.get(name, 1)) for name in categories]
    write_text(out / "Anno" / "list_category_cloth.txt", _list_file("category_name  category_type", cloth, 29))
    labels = [(e.relpath, ids[e.category]) for e in entries]
    write_text(out / "Anno" / "list_category_img.txt", _list_file("image_name  category_label", labels, 72))
    statuses = [(e.relpath, e.status) for e in entries]
    write_text(out / "Eval" / "list_eval_partition.txt", _list_file("image_name  evaluation_status", statuses, 72))


def _write_docs(src: Path, out: Path, entries: list[_Entry], per_class: int, long_side: int, seed: int,
                source: str = "test") -> None:
    """README.md, SOURCE.md and the source's LICENSE beside the images."""
    if (src / "LICENSE").is_file():
        shutil.copyfile(src / "LICENSE", out / "LICENSE")
    else:
        log.warning("%s has no LICENSE file; the sample will have none", src)
    write_text(out / "README.md", _readme(entries, long_side, source))
    write_text(out / "SOURCE.md", _source_note(src, entries, per_class, long_side, seed, source))


def _readme(entries: list[_Entry], long_side: int, source: str = "test") -> str:
    types = {name: kind for name, kind in CATEGORIES.values()}
    rows = []
    for cid, category in enumerate(dict.fromkeys(e.category for e in entries), start=1):
        counts = [sum(e.category == category and e.status == s for e in entries) for _, s in _SPLITS]
        kind = types.get(category, 1)
        rows.append(f"| {cid} | {category} | {kind} ({_TYPE_NAMES[kind]}) | {counts[0]} | {counts[1]} | {counts[2]} |")
    table = "\n".join(rows)
    return f"""# Bundled sample

{len(entries)} real photos of clothes in {len(rows)} categories, the default dataset of every `fashion`
entry point. It is laid out exactly as a DeepFashion Category & Attribute Prediction root, so it is
read by the same code as the full benchmark (`fashion.datasets.load(fashion.sample.sample_root())`):

- `img/<Category>/img_00000001.jpg` — JPEG, EXIF orientation applied, long side {long_side} px (as DeepFashion's);
- `Anno/list_category_cloth.txt` — `category_name category_type`, ids are 1-based by row;
- `Anno/list_category_img.txt` — `image_name category_label`;
- `Eval/list_eval_partition.txt` — `image_name evaluation_status` (train / val / test).

| id | category | category_type | train | val | test |
|---:|---|---|---:|---:|---:|
{table}

`category_type` is DeepFashion's 1 upper-body, 2 lower-body, 3 full-body. Hats and shoes are none of
these; by convention hats are given type 1 (worn above the waist) and shoes type 2 (worn below it).

{_origin(source)}

Licence: CC0 1.0, as the source dataset (see `LICENSE`). Where it comes from and how to rebuild it:
`SOURCE.md`.
"""


def _origin(source: str) -> str:
    if source == "all":
        return "Each status comes from the source split of that name (train, validation, test)."
    note = f"Every photo comes from the source's `{source}` split; train / val / test are the sample's own statuses."
    if source == "test":
        note += (" The bundled clothing model (`fashion/data/model`) was trained on the source's train and "
                 "validation photos only, so it has seen none of these.")
    return textwrap.fill(note, width=100, break_on_hyphens=False)


def _source_note(src: Path, entries: list[_Entry], per_class: int, long_side: int, seed: int,
                 source: str = "test") -> str:
    upstream = (src / "SOURCE.md").read_text(encoding="utf-8").strip() if (src / "SOURCE.md").is_file() else ""
    quoted = "\n".join(f"> {line}" if line else ">" for line in upstream.splitlines())
    quoted = quoted or "> (the source has no SOURCE.md)"
    mapping = "\n".join(f"{e.relpath}  <-  {e.source.relative_to(src).as_posix()}" for e in entries)
    return f"""# Source of the bundled sample

Made from **clothing-dataset-small** by Alexey Grigorev and contributors
(https://github.com/alexeygrigorev/clothing-dataset-small), licence CC0 1.0 (copied to `LICENSE`).
The source's own note:

{quoted}

## How it was made

`scripts/make_sample.py` (`build_sample(src, dst, per_class={per_class}, long_side={long_side}, seed={seed}, \
source="{source}")`): {_how(per_class, source)} (unreadable files are skipped). Each image is opened with `fashion.images.open_image` (EXIF
orientation applied, RGB), resized with Lanczos so its long side is {long_side} px, and saved as a
progressive JPEG of quality {JPEG_QUALITY} without metadata.

Rebuild it (the output is replaced as a whole):

    python scripts/make_sample.py /path/to/clothing-dataset-small fashion/data/sample{"" if source == "test" else f" --source {source}"}

## File mapping (sample <- source)

```
{mapping}
```
"""


def _how(per_class: int, source: str) -> str:
    if source == "all":
        quota = _quota(per_class)
        return (f"for every class, a seeded shuffle (`random.Random(\"<seed>/<split>/<class>\")`) of the sorted "
                f"file names of each source split picks {quota['train']} images from `train`, {quota['val']} from "
                f"`validation` (status `val`) and {quota['test']} from `test`")
    return (f"for every class, a seeded shuffle (`random.Random(\"<seed>/{source}/<class>\")`) of the sorted file "
            f"names of the source's `{source}` split picks {per_class} images (all of them where the class has "
            "fewer); in that order about 2/3 get status `train`, then 1/6 `val` and 1/6 `test`")


def _refuse_foreign(dst: Path) -> None:
    """Refuse to replace a non-empty ``dst`` that is not a previously built sample."""
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        if not (dst / "SOURCE.md").is_file() or not (dst / "Anno" / "list_category_img.txt").is_file():
            raise FashionError(f"{dst} exists and is not a sample built by fashion; refusing to replace it")


def swap_in(building: Path, dst: Path) -> None:
    """Move the finished tree to ``dst``, replacing an old one there (also scripts/bundle_model.py's)."""
    old = dst.with_name(f".{dst.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dst.exists():
        os.replace(dst, old)
    os.replace(building, dst)
    shutil.rmtree(old, ignore_errors=True)


def main(argv=None) -> int:
    defaults = {name: p.default for name, p in inspect.signature(build_sample).parameters.items()
                if p.default is not inspect.Parameter.empty}
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("src", metavar="SRC", help="clothing-dataset-small root (train/validation/test folders)")
    parser.add_argument("dest", metavar="DST", help="where to write the DeepFashion-layout sample")
    parser.add_argument("--per-class", type=int, default=defaults["per_class"], help="images per class")
    parser.add_argument("--long-side", type=int, default=defaults["long_side"], help="longest image side, px")
    parser.add_argument("--seed", type=int, default=defaults["seed"], help="seed of the selection")
    parser.add_argument("--source", default=defaults["source"], choices=SOURCES,
                        help="the source split every photo comes from, or all: each status from its own split")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return report("make_sample.py", lambda: build_sample(args.src, args.dest, per_class=args.per_class,
                                                          long_side=args.long_side, seed=args.seed, source=args.source))


def report(script: str, call) -> int:
    """Run ``call()``: print the path it returns and give 0, or a FashionError / OSError as one line and 2."""
    try:
        dest = call()
    except (FashionError, OSError) as exc:
        print(f"{script}: error: {exc}", file=sys.stderr)
        return 2
    print(dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
