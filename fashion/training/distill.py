"""Knowledge distillation: the student's training loss also pulls its predictions towards those of
trained teachers (Hinton et al., 2015), on the very batches it trains on.

Teachers are exported model directories (``fashion train`` outputs, :func:`fashion.modelio.load_model`)
of the same classes in the same order; several are averaged (their softened probabilities), an ensemble
the student never has to run. Each training batch, after its augmentation and recomposition, goes through
every teacher (no gradient) and the loss becomes::

    (1 - weight) * loss + weight * T² * KL(teacher_T || student_T)

with the probabilities softened by the temperature ``T`` (:data:`TEMPERATURE`; T² keeps the gradient's
scale, as the paper does). The validation loss, which picks the best epoch, stays the plain
classification loss; the LR finder runs without distillation. Imports torch and fastai: loaded when a
stage runs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from fastai.callback.core import Callback

from ..errors import ConfigError

TEMPERATURE = 2.0
log = logging.getLogger("fashion.training")


def load_teachers(directories: Sequence[str], classes: Sequence[str]) -> list:
    """The teachers' networks (eval mode, no gradients), each checked to predict ``classes`` in order."""
    from ..modelio import load_model

    teachers = []
    for directory in directories:
        loaded = load_model(Path(directory))
        if list(loaded.classes) != list(classes):
            raise ConfigError(f"distill: teacher {directory} predicts {list(loaded.classes)}, the student "
                              f"{list(classes)}: teachers need the same classes in the same order")
        for param in loaded.model.parameters():
            param.requires_grad_(False)
        teachers.append(loaded)
    return teachers


def soft_targets(logits_per_teacher, temperature: float = TEMPERATURE):
    """Mean of the teachers' softmax(logits / T): (N, C) probabilities."""
    import torch

    return torch.stack([torch.softmax(z.float() / temperature, dim=1) for z in logits_per_teacher]).mean(0)


def distillation_loss(student_logits, targets, temperature: float = TEMPERATURE):
    """T² · KL(targets ‖ softmax(student / T)), averaged over the batch (a scalar tensor)."""
    import torch

    log_p = torch.log_softmax(student_logits.float() / temperature, dim=1)
    return torch.nn.functional.kl_div(log_p, targets, reduction="batchmean") * temperature ** 2


class Distill(Callback):
    """Mixes the distillation loss into each training batch's loss (see the module's docs).

    The teachers see the student's batch re-normalised to their own mean / std when those differ, and
    resized (bilinear) to the side their kept model was trained at (``ModelInfo.input_size``) when that
    differs from the batch's: a Lite2 kept at 288 px judges a 224 px crop as it judges its own photos,
    with the garment at the apparent size it learnt (FixRes, Touvron et al., 2019)."""

    order = -1  # before MetricLoss (order 0), so its term keeps its own weight beside the mixed one

    def __init__(self, teachers: Sequence[str], weight: float, mean, std, channels_last: bool = False):
        self.directories, self.weight = list(teachers), float(weight)
        self.mean, self.std, self.channels_last = tuple(mean), tuple(std), channels_last
        self.teachers = []

    def before_fit(self):
        """Load the teachers (each stage's fit has a callback of its own, so each loads them: ~0.1 s)."""
        import torch

        from ..modelio import weights_sha256

        self.teachers = load_teachers(self.directories, self.learn.dls.vocab)
        for teacher in self.teachers:
            teacher.model.to(self.learn.dls.device)
            if self.channels_last:  # the student network's layout (fastai's ChannelsLast), oneDNN's fastest
                teacher.model.to(memory_format=torch.channels_last)
            log.info("teacher %s (weights sha256 %s)", teacher.weights_path.parent,
                     weights_sha256(teacher.weights_path)[:16])
        log.info("distilling from %d teacher(s) (weight %.2f, T %.1f)", len(self.teachers), self.weight, TEMPERATURE)

    def _teacher_input(self, x, info):
        import torch

        if tuple(x.shape[-2:]) != (info.input_size,) * 2:
            x = torch.nn.functional.interpolate(x, size=(info.input_size,) * 2, mode="bilinear",
                                                align_corners=False, antialias=info.input_size < x.shape[-1])
        if tuple(info.mean) == self.mean and tuple(info.std) == self.std:
            return x
        to = lambda v: torch.tensor(v, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)  # noqa: E731
        return (x * to(self.std) + to(self.mean) - to(info.mean)) / to(info.std)

    def after_loss(self):
        import torch

        if not self.training:
            return
        x = self.learn.xb[0]
        with torch.no_grad():
            targets = soft_targets([t.model(self._teacher_input(x, t.info)) for t in self.teachers])
        kd = distillation_loss(self.learn.pred, targets)
        self.learn.loss_grad = (1 - self.weight) * self.learn.loss_grad + self.weight * kd
        self.learn.loss = self.learn.loss_grad.clone()
