"""The fixed, documented colour palette: 13 colour families, each a few named swatches in CIELAB.

A colour is named by its nearest swatch under CIEDE2000 (:func:`skimage.color.deltaE_ciede2000`, the
CIE's perceptual colour difference); the swatch's family is the colour's family. A garment's pixels are
named by :func:`family_of_pixels`: the same naming of each pixel rounded to whole Lab units, kept per
process in a table, so that a photo's thousand pixels cost a look-up once the process has met their colours. Several swatches per
family let one family cover shades far apart in Lab (``navy`` and ``dark teal``; ``pink`` and
``magenta``) without stretching a single centre. ``multicolour`` is not a swatch: it is one of the
classes of the fitted family decision (:mod:`fashion.colour.model`), for a garment no one family holds.

Every swatch carries its sRGB hex and its CIELAB value (D65, skimage's ``rgb2lab``); ``tests/test_colour``
checks that the two agree. The swatches are not textbook colours but where garments of each family fall
in phone photos of clothes (dim whites around L* 80, desaturated blues, navy a dark blue of low chroma),
placed by looking at the dev half of the hand-labelled photos; the shade boundaries follow the labelling
protocol in ``tests/data/colour_labels.md`` (black vs navy vs grey, white vs beige, ...), and
``benchmarks/README.md`` gives the accuracy they reach.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

FAMILIES: tuple[str, ...] = (
    "black", "white", "grey", "beige", "brown", "red", "pink", "orange", "yellow", "green", "blue", "navy", "purple",
)
MULTICOLOUR = "multicolour"
# Every name a family column can hold, in display order.
ALL_FAMILIES: tuple[str, ...] = FAMILIES + (MULTICOLOUR,)


@dataclass(frozen=True)
class Swatch:
    """One named reference colour: ``name``, its ``family``, sRGB ``hex`` and CIELAB ``lab`` (L, a, b)."""

    name: str
    family: str
    hex: str
    lab: tuple[float, float, float]


PALETTE: tuple[Swatch, ...] = (
    Swatch("black", "black", "#1d1b1b", (10.0, 1.0, 0.0)),
    Swatch("soft black", "black", "#383433", (22.0, 2.0, 1.0)),
    Swatch("navy", "navy", "#262730", (16.0, 2.0, -6.0)),
    Swatch("mid navy", "navy", "#3a3d4a", (26.0, 2.0, -8.0)),
    Swatch("dark teal", "navy", "#1d333c", (20.0, -6.0, -8.0)),
    Swatch("dusty blue", "blue", "#75859d", (55.0, 0.0, -15.0)),
    Swatch("denim", "blue", "#3e5375", (35.0, 2.0, -22.0)),
    Swatch("dark denim", "blue", "#2c3c56", (25.0, 2.0, -18.0)),
    Swatch("light blue", "blue", "#9bb3cb", (72.0, -3.0, -15.0)),
    Swatch("royal blue", "blue", "#304f9b", (35.0, 15.0, -45.0)),
    Swatch("turquoise", "blue", "#389eaa", (60.0, -25.0, -15.0)),
    Swatch("charcoal", "grey", "#525252", (35.0, 0.0, 0.0)),
    Swatch("grey", "grey", "#848484", (55.0, 0.0, 0.0)),
    Swatch("light grey", "grey", "#ababab", (70.0, 0.0, 0.0)),
    Swatch("slate grey", "grey", "#6c737a", (48.0, -1.0, -5.0)),
    Swatch("white", "white", "#deddd9", (88.0, 0.0, 2.0)),
    Swatch("off-white", "white", "#d4cbbf", (82.0, 1.0, 7.0)),
    Swatch("beige", "beige", "#ac9178", (62.0, 6.0, 17.0)),
    Swatch("sand", "beige", "#c5ad8e", (72.0, 4.0, 19.0)),
    Swatch("brown", "brown", "#674d3b", (35.0, 8.0, 15.0)),
    Swatch("tan", "brown", "#976e4d", (50.0, 12.0, 25.0)),
    Swatch("dark brown", "brown", "#3b2e28", (20.0, 5.0, 6.0)),
    Swatch("red", "red", "#962b35", (35.0, 45.0, 20.0)),
    Swatch("burgundy", "red", "#5c212a", (22.0, 28.0, 8.0)),
    Swatch("bright red", "red", "#c63239", (45.0, 58.0, 32.0)),
    Swatch("pink", "pink", "#c25a79", (52.0, 45.0, 3.0)),
    Swatch("magenta", "pink", "#cb428a", (50.0, 60.0, -10.0)),
    Swatch("dusty pink", "pink", "#b98287", (60.0, 22.0, 6.0)),
    Swatch("light pink", "pink", "#dea0ac", (72.0, 25.0, 3.0)),
    Swatch("salmon", "pink", "#da7270", (60.0, 40.0, 20.0)),
    Swatch("rust", "orange", "#95482f", (40.0, 30.0, 30.0)),
    Swatch("orange", "orange", "#d47a37", (60.0, 30.0, 50.0)),
    Swatch("peach", "orange", "#dea571", (72.0, 15.0, 35.0)),
    Swatch("yellow", "yellow", "#d9c851", (80.0, -8.0, 60.0)),
    Swatch("mustard", "yellow", "#c59636", (65.0, 8.0, 55.0)),
    Swatch("pale yellow", "yellow", "#d2cf93", (82.0, -8.0, 30.0)),
    Swatch("green", "green", "#35846e", (50.0, -30.0, 5.0)),
    Swatch("olive", "green", "#676e51", (45.0, -8.0, 15.0)),
    Swatch("sage", "green", "#889482", (60.0, -8.0, 8.0)),
    Swatch("dark green", "green", "#2e3f34", (25.0, -10.0, 5.0)),
    Swatch("lime", "green", "#9fc658", (75.0, -30.0, 50.0)),
    Swatch("purple", "purple", "#6a466b", (35.0, 22.0, -15.0)),
    Swatch("plum", "purple", "#63324a", (28.0, 25.0, -5.0)),
    Swatch("lavender", "purple", "#9a89b4", (60.0, 15.0, -20.0)),
    Swatch("violet", "purple", "#744ba0", (40.0, 35.0, -40.0)),
)


@cache
def _swatch_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The swatches' Lab values (n, 3) and their family indices into FAMILIES (n,)."""
    labs = np.array([s.lab for s in PALETTE], dtype=np.float64)
    families = np.array([FAMILIES.index(s.family) for s in PALETTE])
    return labs, families


def _swatch_distances(lab: np.ndarray, swatches: np.ndarray | None = None) -> np.ndarray:
    """CIEDE2000 distances (m, n) from each Lab colour of ``lab`` (..., 3, flattened) to each swatch
    (``swatches``: a mask over :data:`PALETTE`; None: all)."""
    from skimage.color import deltaE_ciede2000

    labs, _ = _swatch_arrays()
    labs = labs if swatches is None else labs[swatches]
    return deltaE_ciede2000(np.asarray(lab, dtype=np.float64).reshape(-1, 1, 3), labs[None, :, :])


def nearest_swatch(lab: np.ndarray) -> np.ndarray:
    """Index into :data:`PALETTE` of the nearest swatch (CIEDE2000) for each Lab colour of ``lab`` (..., 3)."""
    return _swatch_distances(lab).argmin(axis=1).reshape(np.shape(lab)[:-1])


def distance_to_family(lab: np.ndarray, family: str) -> np.ndarray:
    """CIEDE2000 distance from each Lab colour of ``lab`` (..., 3) to the nearest swatch of ``family``."""
    _, families = _swatch_arrays()
    own = families == FAMILIES.index(family)
    return _swatch_distances(lab, own).min(axis=1).reshape(np.shape(lab)[:-1])


def family_of(lab: np.ndarray) -> np.ndarray:
    """The family index (into :data:`FAMILIES`) of each Lab colour of ``lab`` (..., 3)."""
    _, families = _swatch_arrays()
    return families[nearest_swatch(lab)]


# The family of every Lab colour rounded to a cell of CELL Lab units: L* 0..100, a* and b* -128..127, one int8
# per cell (6.6 MB; -1: not named yet). The package ships the cells of every sRGB colour named
# (CELLS_FILE, built by scripts/make_colour_cells.py for the palette whose digest it holds); the others, and
# all of them when the palette has changed since, are named as pixels meet them and kept for the process.
CELL = 1.0  # 2 units: 1 ms less a photo at first, dev top-1 0.624 instead of 0.638
_CELLS = (int(100 / CELL) + 1, int(256 / CELL), int(256 / CELL))
CELLS_FILE = Path(__file__).resolve().parents[1] / "data" / "colour_cells.npz"


def palette_digest() -> str:
    """12 hex digits of SHA-256 over the families, the swatches' families and Lab values and the cell size:
    what a table of named cells is valid for."""
    import hashlib

    text = repr((FAMILIES, [(s.family, s.lab) for s in PALETTE], CELL, _CELLS))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def build_cell_table() -> np.ndarray:
    """The family (index into FAMILIES) of the centre of every cell that some 8-bit sRGB colour falls in (the
    colours a photo's pixels can have, gained or not: the exposure step clips to the gamut), -1 for the other
    cells; flat, int8. ~860k cells named by CIEDE2000 against every swatch: a minute or so on one core."""
    from skimage.color import rgb2lab

    levels = np.arange(256, dtype=np.float64) / 255
    g, b = np.meshgrid(levels, levels, indexing="ij")
    seen = np.zeros(int(np.prod(_CELLS)), dtype=bool)
    for r in levels:
        lab = rgb2lab(np.stack([np.full_like(g, r), g, b], axis=-1)).reshape(-1, 3)
        seen[_cells_of(lab)] = True
    table = np.full(seen.size, -1, dtype=np.int8)
    cells = np.flatnonzero(seen)
    for start in range(0, len(cells), 20_000):
        chunk = cells[start:start + 20_000]
        table[chunk] = family_of(_centres(chunk))
    return table


def _cells_of(lab: np.ndarray) -> np.ndarray:
    """The flat cell index of each Lab colour of ``lab`` (n, 3), clipped to the table's range."""
    index = np.rint((lab + [0.0, 128.0, 128.0]) / CELL).astype(np.intp)
    return np.ravel_multi_index(tuple(np.clip(index[:, i], 0, _CELLS[i] - 1) for i in range(3)), _CELLS)


def _centres(cells: np.ndarray) -> np.ndarray:
    """The Lab centre of each flat cell index of ``cells``, (n, 3)."""
    return np.stack(np.unravel_index(cells, _CELLS), axis=-1) * CELL - [0.0, 128.0, 128.0]


@cache
def _cell_families() -> np.ndarray:
    """The process's table of named cells: the shipped one when it was built for this palette, else empty."""
    try:
        with np.load(CELLS_FILE) as data:
            if str(data["digest"]) == palette_digest() and data["families"].shape == (int(np.prod(_CELLS)),):
                return data["families"].astype(np.int8)  # a writable copy: cells outside sRGB are added to it
            log.info("%s was built for another palette: cells are named as they are met", CELLS_FILE)
    except (OSError, KeyError, ValueError) as exc:
        log.info("no table of named colour cells (%s: %s): cells are named as they are met", CELLS_FILE, exc)
    return np.full(int(np.prod(_CELLS)), -1, dtype=np.int8)


def family_of_pixels(lab: np.ndarray) -> np.ndarray:
    """:func:`family_of` for many Lab colours (n, 3), each named by the centre of its cell of ``CELL`` Lab
    units (at most 0.87 units away, well inside the swatches' spacing), through the process's table of named
    cells (:data:`CELLS_FILE`; a cell it lacks is named once, by CIEDE2000 against every swatch, and kept)."""
    cells = _cells_of(np.asarray(lab, dtype=np.float64).reshape(-1, 3))
    table = _cell_families()
    families = table[cells]
    missing = families < 0
    if missing.any():
        new = np.unique(cells[missing])
        table[new] = family_of(_centres(new))
        families = table[cells]
    return families.astype(np.intp)


def family_name(lab) -> str:
    """The family name of one Lab colour (L, a, b)."""
    return FAMILIES[int(family_of(np.asarray(lab, dtype=np.float64)[None])[0])]


def lab_to_hex(lab) -> str:
    """The sRGB hex (``#rrggbb``) of one Lab colour, clipped to the sRGB gamut."""
    from skimage.color import lab2rgb

    rgb = lab2rgb(np.asarray(lab, dtype=np.float64).reshape(1, 1, 3))[0, 0]
    r, g, b = (int(round(float(c) * 255)) for c in np.clip(rgb, 0, 1))
    return f"#{r:02x}{g:02x}{b:02x}"


def hex_to_lab(hex_code: str) -> tuple[float, float, float]:
    """The CIELAB value of an sRGB hex colour ``#rrggbb``."""
    from skimage.color import rgb2lab

    code = hex_code.lstrip("#")
    if len(code) != 6:
        raise ValueError(f"not a #rrggbb colour: {hex_code!r}")
    rgb = np.array([int(code[i:i + 2], 16) for i in (0, 2, 4)], dtype=np.float64) / 255
    L, a, b = rgb2lab(rgb.reshape(1, 1, 3))[0, 0]
    return float(L), float(a), float(b)
