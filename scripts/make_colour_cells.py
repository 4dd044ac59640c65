#!/usr/bin/env python
"""Rebuild the table of named colour cells the package ships (``fashion/data/colour_cells.npz``).

A maintainer's tool, not part of the library: run it after changing the palette
(``fashion/colour/palette.py``: its swatches, families or ``CELL``); ``tests/test_colour.py`` fails until the
shipped table's digest matches the palette again. Without a matching table the code stays right, only slower
(cells are named as pixels meet them)::

    python scripts/make_colour_cells.py            # writes fashion/data/colour_cells.npz

The table holds, for every 1-unit CIELAB cell that some 8-bit sRGB colour falls in, the family of the cell's
centre (:func:`fashion.colour.palette.build_cell_table`), and the palette digest it was built for.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fashion.colour.palette import CELLS_FILE, build_cell_table, palette_digest  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CELLS_FILE)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    import numpy as np

    table = build_cell_table()
    np.savez_compressed(args.out, families=table, digest=np.array(palette_digest()))
    print(f"{args.out}: {int((table >= 0).sum())} cells named for palette {palette_digest()} "
          f"({args.out.stat().st_size} bytes) in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
