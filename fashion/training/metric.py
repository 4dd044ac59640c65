"""Metric learning on the classifier's embedding: a pytorch-metric-learning loss on the head's
penultimate features (the input of its last Linear, which is what ``measure_sim.py --model DIR`` and
``fashion neighbors --layer head`` embed with), added to the classification loss of every training batch.

The network is unchanged, so the model exports and loads as any other (:mod:`fashion.modelio`). Losses:
``supcon`` (supervised contrastive, temperature 0.1), ``multisimilarity`` (with its miner),
``arcface`` (additive angular margin; its class centres are trained by an Adam of their own and start
afresh each stage). Imports fastai and pytorch-metric-learning: loaded when a stage runs.
"""

from __future__ import annotations

from fastai.callback.hook import HookCallback

from ..errors import ConfigError

ARCFACE_LR = 1e-3  # the loss's own class centres (pytorch-metric-learning trains them with a separate optimiser)


def make_metric_loss(name: str, n_classes: int, dim: int):
    """(loss module, miner or None) of a :data:`~fashion.training.config.METRIC_LOSSES` name."""
    try:
        from pytorch_metric_learning import losses, miners
    except ImportError:  # pragma: no cover - an install without the dependency
        raise ConfigError("metric_loss needs pytorch-metric-learning: pip install pytorch-metric-learning") from None
    if name == "supcon":
        return losses.SupConLoss(temperature=0.1), None
    if name == "multisimilarity":
        return losses.MultiSimilarityLoss(), miners.MultiSimilarityMiner()
    if name == "arcface":
        return losses.ArcFaceLoss(n_classes, dim), None
    raise ConfigError(f"unknown metric_loss {name!r}")


class MetricLoss(HookCallback):
    """Adds ``weight`` × a metric-learning loss on the penultimate features to each training batch's loss.

    The features are the input of the head's last Linear, grabbed by fastai's forward hook (a
    ``HookCallback``: registered in ``before_fit``, removed in ``after_fit``). A fit that raises skips
    ``after_fit``, and the hook keeps the callback alive, so ``run_stage`` removes the hooks itself in a
    ``finally``. The validation loss (which picks the best epoch) stays the classification loss alone.
    """

    def __init__(self, name: str, weight: float, n_classes: int):
        super().__init__(modules=None, detach=False, cpu=False)
        self.loss_name, self.weight, self.n_classes = name, weight, n_classes

    def hook(self, module, inputs, output):
        return inputs[0]

    def before_fit(self):
        import torch

        last = self.learn.model[1][-1]
        # fastai's Callback.__setattr__ warns that this shadows ``learn.modules`` (the model's
        # nn.Module.modules, reached through the learner); the hook list is the callback's own
        self.__dict__["modules"] = [last]
        self.metric, self.miner = make_metric_loss(self.loss_name, self.n_classes, last.in_features)
        params = list(self.metric.parameters())
        self.centres_opt = torch.optim.Adam(params, lr=ARCFACE_LR) if params else None
        super().before_fit()

    def after_loss(self):
        features = self.hooks.stored[0]
        if not self.training or features is None:
            return
        labels = self.learn.yb[0]
        feats = features.float()
        extra = self.metric(feats, labels, self.miner(feats, labels)) if self.miner else self.metric(feats, labels)
        self.learn.loss_grad = self.learn.loss_grad + self.weight * extra
        self.learn.loss = self.learn.loss_grad.clone()

    def after_step(self):
        if self.centres_opt is not None:
            self.centres_opt.step()
            self.centres_opt.zero_grad()
