"""Confident-learning cleanup of the *training* labels (``TrainConfig(clean_labels="drop" | "weight")``, #15).

cleanlab needs out-of-sample probabilities for every photo it judges. For the training photos they come
cheaply from cross-validation of a logistic regression on frozen features of the pretrained backbone
(the same body the run fine-tunes): :func:`out_of_fold_probs`, then
:func:`fashion.training.evaluate.find_suspect_labels`. :func:`clean_splits` drops the flagged photos
from the training table before the Learner is built ("drop"), or keeps them with a ``sample_weight``
column, their cleanlab label-quality score (``cleanlab.rank.get_label_quality_scores``: how likely the
given label is, 0–1), that the training DataLoader samples by ("weight"; everything else weighs 1);
either way the flagged photos are written to ``train_label_issues.csv``.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from ..atomic import save_csv
from .config import TrainConfig
from .state import Splits

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

log = logging.getLogger("fashion.training")

ISSUES_FILE = "train_label_issues.csv"
FOLDS = 5
MIN_WEIGHT = 0.05  # a flagged photo is still drawn now and then: the out-of-fold model can be wrong


def out_of_fold_probs(features: "np.ndarray", targets: "np.ndarray", folds: int = FOLDS, seed: int = 0) -> "np.ndarray":
    """Out-of-fold class probabilities float (n, c) of a logistic regression on ``features`` (n, d):
    each row predicted by a model fitted on the other folds (stratified, seeded). Classes with fewer
    photos than ``folds`` lower the number of folds (at least 2)."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    targets = np.asarray(targets, dtype=int)
    counts = np.bincount(targets)
    folds = max(2, min(folds, int(counts[counts > 0].min())))
    model = LogisticRegression(max_iter=1000, C=1.0)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return cross_val_predict(model, np.asarray(features, dtype=np.float32), targets, cv=cv, method="predict_proba")


def clean_splits(splits: Splits, config: TrainConfig, output_dir) -> Splits:
    """``splits`` with the training photos cleanlab flags removed (``config.clean_labels == "drop"``) or
    down-weighted (``"weight"``: a ``sample_weight`` column, the flagged photos' label-quality score, at
    least :data:`MIN_WEIGHT`; 1 for the others).

    Embeds the training photos once with the pretrained ``config.arch`` body, predicts them out of fold
    and writes the flagged ones (path, label, predicted, probabilities) to ``output_dir/train_label_issues.csv``.
    """
    import numpy as np
    from cleanlab.rank import get_label_quality_scores

    from ..embedding import Embedder
    from .evaluate import find_suspect_labels

    if config.clean_labels == "none":
        return splits
    train = splits.train
    embedder = Embedder.from_backbone(config.arch, pretrained=config.pretrained, weights=config.weights)
    result = embedder.embed(train, crop=config.crop == "bbox", progress=False)
    index = {c: i for i, c in enumerate(splits.classes)}
    targets = np.array([index[label] for label in train["label"]])
    ok = np.asarray(result.ok, dtype=bool)
    probs = np.zeros((len(train), len(splits.classes)))
    probs[ok] = out_of_fold_probs(result.vectors[ok], targets[ok], seed=config.seed)
    suspects = find_suspect_labels(train[ok].reset_index(drop=True), targets[ok], probs[ok], splits.classes)
    save_csv(output_dir / ISSUES_FILE, suspects)
    flagged = train["path"].isin(set(suspects["path"])).to_numpy()
    if config.clean_labels == "weight":
        quality = np.ones(len(train))
        quality[ok] = get_label_quality_scores(targets[ok], probs[ok])
        weights = np.where(flagged, np.clip(quality, MIN_WEIGHT, 1.0), 1.0)
        cleaned = train.assign(sample_weight=weights)
        how = f"with them sampled at their label-quality score (mean {weights[flagged].mean() if flagged.any() else 1:.2f})"
    else:
        cleaned, how = train[~flagged].reset_index(drop=True), "without them"
    log.info("label cleanup: cleanlab flags %d of %d training photos (out-of-fold logistic regression on "
             "pretrained %s features); training %s (%s)", len(suspects), len(train), config.arch, how,
             output_dir / ISSUES_FILE)
    return dataclasses.replace(splits, train=cleaned)
