"""The fixed, documented colour palette: 13 colour families, each a few named swatches in CIELAB.

A colour is named by its nearest swatch under CIEDE2000 (:func:`skimage.color.deltaE_ciede2000`, the
CIE's perceptual colour difference); the swatch's family is the colour's family. A garment's pixels are
named by :func:`family_of_pixels`: the same naming of each pixel rounded to whole Lab units, kept per
process in a table, so that a photo's thousand pixels cost a look-up once the process has met their colours. Several swatches per
family let one family cover shades far apart in Lab (``navy`` and ``dark teal``; ``pink`` and
``magenta``) without stretching a single centre. ``multicolour`` is not a swatch: it is what
:mod:`fashion.colour.dominant` calls a garment where no family holds most of the pixels.

Every swatch carries its sRGB hex and its CIELAB value (D65, skimage's ``rgb2lab``); ``tests/test_colour``
checks that the two agree. The swatches are not textbook colours but where garments of each family fall
in phone photos of clothes (dim whites around L* 80, desaturated blues, navy a dark blue of low chroma),
placed by looking at the dev half of the hand-labelled photos; the shade boundaries follow the labelling
protocol in ``tests/data/colour_labels.md`` (black vs navy vs grey, white vs beige, ...), and
``benchmarks/README.md`` gives the accuracy they reach.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

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


def nearest_swatch(lab: np.ndarray) -> np.ndarray:
    """Index into :data:`PALETTE` of the nearest swatch (CIEDE2000) for each Lab colour of ``lab`` (..., 3)."""
    from skimage.color import deltaE_ciede2000

    lab = np.asarray(lab, dtype=np.float64)
    labs, _ = _swatch_arrays()
    flat = lab.reshape(-1, 1, 3)
    distances = deltaE_ciede2000(flat, labs[None, :, :])  # (m, n swatches)
    return distances.argmin(axis=1).reshape(lab.shape[:-1])


def family_of(lab: np.ndarray) -> np.ndarray:
    """The family index (into :data:`FAMILIES`) of each Lab colour of ``lab`` (..., 3)."""
    _, families = _swatch_arrays()
    return families[nearest_swatch(lab)]


# The family of every Lab colour rounded to a cell of CELL Lab units, filled in as colours are met (-1: not yet):
# L* 0..100, a* and b* -128..127, one int8 per cell (6.6 MB). A garment's pixels repeat a few hundred cells, so
# once a process has named some photos, naming a pixel costs a look-up, not CIEDE2000 against every swatch.
CELL = 1.0  # 2 units: 1 ms less a photo at first, dev top-1 0.624 instead of 0.638
_CELLS = (int(100 / CELL) + 1, int(256 / CELL), int(256 / CELL))


@cache
def _cell_families() -> np.ndarray:
    return np.full(int(np.prod(_CELLS)), -1, dtype=np.int8)


def family_of_pixels(lab: np.ndarray) -> np.ndarray:
    """:func:`family_of` for many Lab colours (n, 3), each named by the centre of its cell of ``CELL`` Lab
    units (at most 0.87 units away, well inside the swatches' spacing): the family of a cell is computed once
    (CIEDE2000 against every swatch) and kept for the process."""
    lab = np.asarray(lab, dtype=np.float64).reshape(-1, 3)
    index = np.rint((lab + [0.0, 128.0, 128.0]) / CELL).astype(np.intp)
    cells = np.ravel_multi_index(tuple(np.clip(index[:, i], 0, _CELLS[i] - 1) for i in range(3)), _CELLS)
    table = _cell_families()
    families = table[cells]
    missing = families < 0
    if missing.any():
        new = np.unique(cells[missing])
        centres = np.stack(np.unravel_index(new, _CELLS), axis=-1) * CELL - [0.0, 128.0, 128.0]
        table[new] = family_of(centres)
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
