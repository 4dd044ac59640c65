"""fashion.colour: the palette, the garment's colour on synthetic photos, the batch table and the
hand-labelled photos' accuracy (tests/data/colour_labels.csv)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fashion.colour.dominant import garment_colour
from fashion.colour.garment import downsized_lab, garment_mask
from fashion.colour.labels import ColourLabel, Score, agreement, locate, read_labels
from fashion.colour.palette import ALL_FAMILIES, FAMILIES, MULTICOLOUR, PALETTE, family_name, hex_to_lab, lab_to_hex
from fashion.colour.table import COLUMNS, colour_table
from fashion.errors import DatasetError
from fashion.sample import sample_root

from factories import PHOTO_COLOURS, garment_background as _background, garment_photo as _garment_photo

REPO = Path(__file__).resolve().parents[1]
LABELS = REPO / "tests" / "data" / "colour_labels.csv"
DATASET = REPO.parent / "shared" / "data" / "clothing-dataset-small"

# --- the palette ---------------------------------------------------------------------------------

def test_palette_names_and_values_are_unique_and_cover_the_families():
    assert len({s.name for s in PALETTE}) == len(PALETTE)
    assert len({s.lab for s in PALETTE}) == len(PALETTE)
    assert len({s.hex for s in PALETTE}) == len(PALETTE)
    assert {s.family for s in PALETTE} == set(FAMILIES)
    assert len(FAMILIES) == 13 and MULTICOLOUR not in FAMILIES and ALL_FAMILIES[-1] == MULTICOLOUR


def test_palette_hex_and_lab_agree_and_every_swatch_names_its_own_family():
    for swatch in PALETTE:
        assert np.allclose(hex_to_lab(swatch.hex), swatch.lab, atol=0.6), swatch
        assert lab_to_hex(swatch.lab) == swatch.hex
        assert family_name(swatch.lab) == swatch.family, swatch


def test_pixels_are_named_as_the_exact_naming_names_their_rounded_colour():
    """family_of_pixels (the per-process table of 1-unit Lab cells) gives family_of of each colour rounded to
    whole units, for pixels met for the first time and again; colours outside the table's range are clipped."""
    from fashion.colour.palette import family_of, family_of_pixels

    rng = np.random.default_rng(3)
    lab = np.column_stack([rng.uniform(0, 100, 3000), rng.uniform(-80, 80, 3000), rng.uniform(-80, 80, 3000)])
    expected = family_of(np.rint(lab))
    assert np.array_equal(family_of_pixels(lab), expected)
    assert np.array_equal(family_of_pixels(lab[::-1]), expected[::-1])  # from the table this time
    assert np.mean(family_of_pixels(lab) == family_of(lab)) > 0.97  # rounding moves only boundary colours
    edge = np.array([[-3.0, 0.0, 0.0], [104.0, 0.0, 0.0], [50.0, 140.0, -140.0]])
    assert np.array_equal(family_of_pixels(edge), family_of(np.array([[0.0, 0, 0], [100.0, 0, 0], [50.0, 127, -128]])))


def test_the_shipped_table_of_named_cells_is_this_palettes():
    """fashion/data/colour_cells.npz names the cells of the sRGB colours for the current palette (rebuild it
    with scripts/make_colour_cells.py after changing the palette): its digest matches, a seeded sample of its
    named cells agrees with the exact naming, and the process's table starts from it."""
    from fashion.colour import palette

    with np.load(palette.CELLS_FILE) as data:
        assert str(data["digest"]) == palette.palette_digest(), "rebuild it: python scripts/make_colour_cells.py"
        families = data["families"]
    named = np.flatnonzero(families >= 0)
    assert 800_000 < len(named) < 900_000  # the cells some 8-bit sRGB colour falls in
    sample = np.random.default_rng(0).choice(named, 3000, replace=False)
    assert np.array_equal(families[sample], palette.family_of(palette._centres(sample)))
    assert (palette._cell_families()[named] >= 0).all()


def test_palette_is_documented():
    import fashion.colour.palette as palette

    for family in FAMILIES:
        assert family in (REPO / "tests" / "data" / "colour_labels.md").read_text()
    assert "CIEDE2000" in palette.__doc__ and "multicolour" in palette.__doc__


def test_hex_to_lab_refuses_a_bad_code():
    with pytest.raises(ValueError, match="rrggbb"):
        hex_to_lab("#12345")


# --- synthetic garments ----------------------------------------------------------------------------

# every family on every background, but for a garment of the background's own colour (the documented
# failure case: test_garment_of_the_backgrounds_colour_falls_back_to_the_centre)
CASES = [(f, b) for f in FAMILIES for b in ("sheet", "wood", "tiles") if (f, b) not in {("white", "sheet"), ("grey", "tiles")}]


@pytest.mark.parametrize("family, background", CASES)
def test_synthetic_garment_colour_is_recovered(family, background):
    photo = _garment_photo(PHOTO_COLOURS[family], background, seed=FAMILIES.index(family))
    colour = garment_colour(photo)
    assert colour.method == "border"
    assert colour.family == family, (colour.family, colour.shares)
    assert colour.share > 0.5
    assert 0.2 < colour.garment_share < 0.6  # the tee covers ~38% of the frame
    assert colour.hex.startswith("#") and len(colour.hex) == 7
    assert abs(sum(c.share for c in colour.clusters) - 1) < 1e-9
    assert abs(sum(share for _, share in colour.shares) - 1) < 1e-9


def test_garment_of_the_backgrounds_colour_falls_back_to_the_centre():
    colour = garment_colour(_garment_photo(PHOTO_COLOURS["white"], "sheet"))
    assert colour.method == "centre" and colour.family == "white"


def test_garment_mask_separates_the_garment_from_a_textured_floor():
    photo = _garment_photo(PHOTO_COLOURS["red"], "wood", shape="ellipse")
    found = garment_mask(downsized_lab(photo))
    h, w = found.mask.shape
    assert found.method == "border"
    assert found.mask[h // 2, w // 2] and not found.mask[2, 2] and not found.mask[-3, -3]
    assert abs(found.share - np.pi * 0.25 ** 2) < 0.05  # the ellipse covers pi/16 of the frame


def test_a_garment_that_fills_the_frame_is_named_from_the_centre():
    photo = Image.fromarray(np.full((200, 150, 3), PHOTO_COLOURS["green"], dtype=np.uint8))
    colour = garment_colour(photo)
    assert colour.method == "centre" and colour.family == "green" and colour.shares == (("green", 1.0),)


def test_a_striped_garment_of_four_colours_is_multicolour():
    w, h = 300, 400
    rgb = _background("sheet", (w, h))
    stripes = [PHOTO_COLOURS[f] for f in ("red", "green", "blue", "yellow")]
    for i, y in enumerate(range(100, 300, 10)):
        rgb[y:y + 10, 75:225] = stripes[i % 4]
    colour = garment_colour(Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)))
    assert colour.family == MULTICOLOUR
    assert colour.family_2 in {"red", "green", "blue", "yellow"}
    assert {f for f, share in colour.shares if share >= 0.15} >= {"red", "green", "blue", "yellow"}


def test_bbox_limits_the_colour_to_the_boxed_garment():
    # a blue garment on the left, a big red one on the right: the box picks the blue one
    w, h = 400, 300
    rgb = _background("sheet", (w, h))
    rgb[80:220, 40:160] = PHOTO_COLOURS["blue"]
    rgb[30:280, 220:390] = PHOTO_COLOURS["red"]
    photo = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    assert garment_colour(photo).family == "red"
    assert garment_colour(photo, bbox=(40, 80, 160, 220)).family == "blue"
    with pytest.raises(ValueError, match="empty bounding box"):
        garment_colour(photo, bbox=(500, 500, 600, 600))


def test_garment_colour_is_pure_and_takes_arrays():
    photo = _garment_photo(PHOTO_COLOURS["purple"], "wood")
    assert garment_colour(photo) == garment_colour(photo)
    assert garment_colour(np.asarray(photo)).family == garment_colour(np.asarray(photo) / 255.0).family == "purple"
    with pytest.raises(ValueError, match="RGB image"):
        garment_colour(np.zeros((10, 10)))


# --- the batch table -------------------------------------------------------------------------------

def test_colour_table_has_one_row_per_photo_and_counts_the_skipped(tmp_path):
    paths = []
    for family in ("navy", "yellow"):
        path = tmp_path / f"{family}.jpg"
        _garment_photo(PHOTO_COLOURS[family], "sheet").save(path, quality=92)
        paths.append(path)
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    paths[1:1] = [tmp_path / "empty.jpg", tmp_path / "missing.jpg", tmp_path / "text.jpg"]
    table = colour_table(paths)
    frame = table.frame
    assert list(frame.columns) == list(COLUMNS) and len(frame) == len(paths)
    assert list(frame["colour"].fillna("-")) == ["navy", "-", "-", "-", "yellow"]
    assert frame["colour_share"].dtype == np.float64 and frame["colour_share"].isna().sum() == 3
    assert frame.loc[0, "colour_hex"].startswith("#") and frame.loc[4, "colour_share"] > 0.5
    assert sum(table.skipped.values()) == 3 and all(isinstance(reason, str) for reason in table.skipped)
    items = pd.DataFrame({"path": [str(p) for p in paths]})
    assert list(items.join(frame).columns) == ["path", *COLUMNS]  # joins by row


def test_colour_table_checks_bbox_count(tmp_path):
    with pytest.raises(ValueError, match="bboxes"):
        colour_table([tmp_path / "a.jpg"], bboxes=[None, None])


# --- the hand-labelled photos ----------------------------------------------------------------------

def test_labels_file_is_well_formed():
    labels = read_labels(LABELS)
    assert len(labels) >= 300
    assert {label.relpath.split("/")[1] for label in labels} >= {
        "dress", "hat", "longsleeve", "outwear", "pants", "shirt", "shoes", "shorts", "skirt", "t-shirt"}
    assert {label.family for label in labels} == set(ALL_FAMILIES)
    assert {label.split for label in labels} == {"dev", "holdout", "fit", "spare"}
    assert all(label.relpath.startswith(("train/", "validation/"))
               for label in labels if label.split in ("fit", "spare"))


def test_second_labellers_photos_are_dev_photos_of_the_first():
    first = {label.relpath: label for label in read_labels(LABELS)}
    second = read_labels(LABELS.with_name("colour_labels_second.csv"))
    assert len(second) >= 40 and all(first[label.relpath].split == label.split == "dev" for label in second)


def test_agreement_of_two_labellers():
    def label(name, family, family_2=None):
        return ColourLabel(name, family, family_2, "dev")

    first = [label("a", "navy", "black"), label("b", "grey"), label("c", "red"), label("d", "blue")]
    second = [label("a", "black"), label("b", "blue", "grey"), label("c", "red"), label("e", "pink")]
    assert agreement(first, second) == (3, 1 / 3, 1.0)
    assert agreement(first, [label("e", "pink")])[0] == 0


def test_read_labels_names_the_bad_line(tmp_path):
    bad = tmp_path / "labels.csv"
    bad.write_text("relpath,family,family_2,split,note\ntest/a.jpg,blue,,dev,\ntest/b.jpg,teal,,dev,\n")
    with pytest.raises(DatasetError, match=r"labels.csv:3: unknown colour family 'teal'"):
        read_labels(bad)
    bad.write_text("relpath,family\n")
    with pytest.raises(DatasetError, match="expected the columns"):
        read_labels(bad)


# The held-out half's accuracy with the current code (benchmarks/colour.py; see benchmarks/README.md), less about
# 3 photos of margin for the small differences between platforms' JPEG decoders and BLAS: a regression fails here.
# With the fitted family decision (fashion/colour/model.py, fitted on the fit + dev rows only): measured 0.627 /
# 0.849 (225 holdout photos; 0.596 / 0.773 with the largest-share rule before) and 0.611 / 0.865 (the sample's 193
# at 300 px; 0.565 / 0.777 before).
MIN_TOP1 = {"dataset": 0.61, "sample": 0.59}
MIN_TOP2 = {"dataset": 0.83, "sample": 0.845}


def test_hand_labelled_accuracy_does_not_regress():
    """Recompute the colour-family accuracy on the held-out half of the hand-labelled photos, read as the run's
    colour stage reads them (:func:`fashion.colour.table.file_colour`): all of them under
    ../shared/data/clothing-dataset-small when it exists, else those of its test split that the bundled
    sample holds (so this never skips)."""
    from fashion.colour.table import file_colour

    labels = read_labels(LABELS)
    source = "dataset" if DATASET.is_dir() else "sample"
    paths = locate(labels, DATASET, sample_root())
    score = Score()
    for label, path in zip(labels, paths):
        if path is not None and label.split == "holdout":
            colour = file_colour(path)
            score.add(label.family, colour.family, colour.family_2, label.family_2)
    assert score.n >= 193
    assert score.top1_accuracy >= MIN_TOP1[source], (source, score.top1_accuracy)
    assert score.top2_accuracy >= MIN_TOP2[source], (source, score.top2_accuracy)


def test_the_hex_of_a_family_no_cluster_is_of_comes_from_the_nearest_cluster():
    """The fitted decision can name a family none of the clusters falls in (a dark navy read as black): the
    swatch is then the cluster nearest that family's swatches, not whatever cluster is largest."""
    from fashion.colour.dominant import ColourCluster, GarmentColour

    red = ColourCluster("#b01e23", hex_to_lab("#b01e23"), 0.6, "red")
    navy = ColourCluster("#262a37", hex_to_lab("#262a37"), 0.4, "navy")
    colour = GarmentColour((red, navy), "black", "navy", 0.0, 0.5, "border")
    assert colour.hex == "#262a37"
    assert GarmentColour((red, navy), "navy", "black", 0.4, 0.5, "border").hex == "#262a37"  # its own cluster
    assert GarmentColour((red, navy), MULTICOLOUR, "red", 0.6, 0.5, "border").hex == "#b01e23"  # the largest
