"""Training-step speed of ``--freeze-early N`` against the whole body, in the same run (issue 15).

    python benchmarks/train_step.py --arch efficientnet_lite2 --size 224 --freeze 0,3,5,7

One fastai-free training step = forward, cross entropy, backward, AdamW step, on a random batch in
channels-last (as ``fashion train``), for a classifier built by ``fashion.modelio.build_classifier``
(random weights: speed does not depend on them). ``--freeze N`` keeps the body's first N layers
(``fashion.backbones.body_units``) frozen the way training does (``fashion.training.stages.early_parameters``,
BatchNorm in eval mode). Prints images per second and the speed-up over N = 0 side by side, and the
minutes one epoch of the 3,068 clothing-dataset-small training photos would take (network only: JPEG
decoding and augmentation are not in it).
"""

from __future__ import annotations

import argparse
import time


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="efficientnet_lite2")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--freeze", default="0,3,5,7", help="comma-separated N of --freeze-early to compare (0 first)")
    p.add_argument("--steps", type=int, default=6, help="timed steps per setting (after 2 warm-up steps)")
    p.add_argument("--epoch-images", type=int, default=3068)
    return p.parse_args(argv)


def step_speed(arch: str, size: int, batch_size: int, freeze: int, steps: int) -> float:
    """Images per second of training steps with the body's first ``freeze`` layers frozen."""
    import torch
    from fastai.callback.training import set_bn_eval

    from fashion.modelio import build_classifier
    from fashion.training.stages import early_parameters

    torch.manual_seed(0)
    model, _ = build_classifier(arch, 10, pretrained=False)
    frozen = early_parameters(model, freeze)
    for p in frozen:
        p.requires_grad_(False)
    model = model.to(memory_format=torch.channels_last).train()
    set_bn_eval(model)  # what fastai's BnFreeze does in training: BN without trainable weights keeps its statistics
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 1e-4)
    x = torch.randn(batch_size, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch_size,))

    def one() -> None:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    one(), one()
    t0 = time.perf_counter()
    for _ in range(steps):
        one()
    return batch_size * steps / (time.perf_counter() - t0)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    settings = [int(n) for n in args.freeze.split(",")]
    print(f"{args.arch} at {args.size} px, batch {args.batch_size}, {torch.get_num_threads()} torch threads, "
          f"{args.steps} timed steps each")
    print(f"{'freeze-early':>12} {'img/s':>8} {'vs 0':>6} {'epoch min':>10}")
    base = None
    for n in settings:
        speed = step_speed(args.arch, args.size, args.batch_size, n, args.steps)
        base = base or (speed if n == 0 else None)
        ratio = f"{speed / base:6.2f}" if base else f"{'-':>6}"
        print(f"{n:12d} {speed:8.1f} {ratio} {args.epoch_images / speed / 60:10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
