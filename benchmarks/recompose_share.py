"""How many training photos the recompose lever (``fashion.training.recompose``) can recompose: the share of a
seeded sample of clothing-dataset-small's training photos, squished to the training size, whose garment mask
is found from the border and that have a garment-free border side (the others pass unchanged, so
``--recompose P`` recomposes about P × this share).

    python benchmarks/recompose_share.py --data /work/shared/data/clothing-dataset-small --n 300
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/work/shared/data/clothing-dataset-small")
    parser.add_argument("--n", type=int, default=300, help="photos sampled from train/")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import numpy as np
    from PIL import Image

    from fashion.images import open_image
    from fashion.resize import resize_image
    from fashion.training.backdrops import garment_alpha
    from fashion.training.recompose import background_strip

    paths = sorted(Path(args.data, "train").glob("*/*.jpg"))
    picked = random.Random(args.seed).sample(paths, min(args.n, len(paths)))
    centre = no_strip = 0
    for path in picked:
        image = Image.fromarray(resize_image(open_image(path), args.size, "squish"))  # as training squishes it
        alpha, method = garment_alpha(image)
        if method != "border":
            centre += 1
        elif background_strip(np.asarray(image), alpha) is None:
            no_strip += 1
    n = len(picked)
    ok = n - centre - no_strip
    print(f"{n} training photos at {args.size} px: {ok} can be recomposed ({ok / n:.3f}); {centre} masks fell back "
          f"to the centre, {no_strip} have no garment-free border side")
    return 0


if __name__ == "__main__":
    sys.exit(main())
