"""Evaluation of a trained classifier: pure metric functions on arrays (probabilities (n, c), integer
targets (n,)), then :func:`evaluate` computes them for a run and writes its files; :func:`export`
writes the model directory."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..atomic import save_csv, save_figure, write_json
from ..modelio import DEFAULT_HEAD, ModelInfo, export_model
from . import plots
from .data import set_size
from .robustness import PERTURBED
from .state import TrainingRun

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import pandas as pd

log = logging.getLogger("fashion.training")

TOPK = (1, 3, 5)

#: Below this accuracy on the photos cleanlab judges, its suspect-label flags say more about the model
#: than about the labels: a model wrong on more than one photo in five disputes many correct labels
#: (a 0.30-accuracy model flagged 45 of 80 photos), while a curated dataset mislabels a few in a hundred.
SUSPECT_MIN_ACCURACY = 0.8


def classification_metrics(targets: "np.ndarray", probs: "np.ndarray", classes: Sequence[str],
                           ks: Sequence[int] = TOPK, min_confused: int = 1) -> dict:
    """Top-k accuracy, per-class accuracy, confusion matrix and most-confused pairs.

    targets: int (n,); probs: float (n, c). Returns a JSON-ready dict: ``topk`` {k: acc} (k ≤ c),
    ``accuracy`` (top-1), ``per_class`` {class: acc or None}, ``confusion_matrix`` (c × c list,
    rows = actual), ``most_confused`` [(actual, predicted, count)], ``n``.
    """
    import numpy as np

    from ..metrics import confusion_matrix, most_confused, per_class_accuracy, topk_accuracy

    targets, probs = np.asarray(targets), np.asarray(probs)
    ks = tuple(k for k in ks if k <= probs.shape[1])
    topk = topk_accuracy(targets, probs, ks=ks)
    cm = confusion_matrix(targets, probs.argmax(1), len(classes))
    per_class = per_class_accuracy(cm)
    return {
        "n": int(len(targets)),
        "accuracy": float(topk[1]),
        "topk": {int(k): float(v) for k, v in topk.items()},
        "per_class": {c: (None if not np.isfinite(a) else float(a)) for c, a in zip(classes, per_class)},
        "confusion_matrix": np.asarray(cm).astype(int).tolist(),
        "most_confused": [list(t) for t in most_confused(cm, list(classes), min_count=min_confused)],
    }


def find_suspect_labels(items: "pd.DataFrame", targets: "np.ndarray", probs: "np.ndarray",
                        classes: Sequence[str]) -> "pd.DataFrame":
    """Items whose given label the model disputes, by cleanlab's confident learning.

    ``probs`` must be out-of-sample predictions (from a model that did not train on these items).
    Returns the rows of ``items`` flagged by ``cleanlab.filter.find_label_issues`` (ranked by
    self-confidence, most suspect first) with columns path, label, predicted, label_prob,
    predicted_prob. Empty when cleanlab cannot run (e.g. too few items).
    """
    import numpy as np
    import pandas as pd
    from cleanlab.filter import find_label_issues

    targets, probs = np.asarray(targets, dtype=int), np.asarray(probs, dtype=float)
    columns = ["path", "label", "predicted", "label_prob", "predicted_prob"]
    try:
        order = find_label_issues(targets, probs, return_indices_ranked_by="self_confidence")
    except (ValueError, IndexError, ZeroDivisionError) as exc:  # tiny or degenerate inputs
        log.warning("suspect labels not computed: %s", exc)
        return pd.DataFrame(columns=columns)
    preds = probs.argmax(1)
    rows = [{"path": items["path"].iloc[i], "label": classes[targets[i]], "predicted": classes[preds[i]],
             "label_prob": float(probs[i, targets[i]]), "predicted_prob": float(probs[i, preds[i]])}
            for i in order]
    return pd.DataFrame(rows, columns=columns)


def suspect_caveat(targets: "np.ndarray", probs: "np.ndarray", min_accuracy: float = SUSPECT_MIN_ACCURACY) -> dict:
    """How far to trust suspect labels found from ``probs``: the model's accuracy on the judged items.

    targets: int (n,); probs: float (n, c). Returns ``model_accuracy``, ``min_accuracy``, ``reliable``
    (accuracy >= min_accuracy) and ``caveat``: a plain sentence when unreliable, else None.

    >>> import numpy as np
    >>> weak = suspect_caveat(np.array([0, 1, 2, 0]), np.eye(3)[[0, 2, 0, 1]])
    >>> weak["reliable"], weak["model_accuracy"]
    (False, 0.25)
    >>> suspect_caveat(np.array([0, 1]), np.eye(2))["caveat"] is None
    True
    """
    import numpy as np

    targets, probs = np.asarray(targets, dtype=int), np.asarray(probs, dtype=float)
    accuracy = float(np.mean(probs.argmax(1) == targets)) if len(targets) else float("nan")
    reliable = bool(accuracy >= min_accuracy)
    caveat = None if reliable else (
        f"unreliable: the model is right on only {accuracy:.0%} of the {len(targets)} photos it judged "
        f"(below {min_accuracy:.0%}), so most flagged labels are likely its own mistakes, not wrong labels; "
        "do not relabel from this list")
    return {"model_accuracy": accuracy, "min_accuracy": min_accuracy, "reliable": reliable, "caveat": caveat}


# ------------------------------------------------------------------------------------------ a run


def model_size(run: TrainingRun) -> int:
    """Image size the kept model was trained at: the best stage's (inference and export use it)."""
    if run.best and run.best.get("stage") in run.results:
        return run.results[run.best["stage"]].size
    done = [s for s in run.config.stages if s.epochs > 0]
    return done[-1].size if done else run.size


def predict(run: TrainingRun, frame: "pd.DataFrame"):
    """Probabilities (n, c) float32 numpy and targets (n,) int of ``frame`` under the valid transforms."""
    import numpy as np

    dl = run.learn.dls.test_dl(frame, with_labels=True)
    with run.learn.no_bar():  # a log gets the result line, not fastprogress' bar (issue 30 item 4)
        probs, targets = run.learn.get_preds(dl=dl)
    return probs.numpy().astype(np.float32), targets.numpy().astype(int)


def predict_tta(run: TrainingRun, frame: "pd.DataFrame", n: int = 4):
    """As :func:`predict`, with fastai's test-time augmentation (``Learner.tta``: the mean of ``n`` passes
    under the training augmentations, blended 3:1 with the plain pass). A per-photo transform marked
    ``in_tta = False`` (the recompose lever: a training lever, not an augmentation of the photo at hand)
    is left out of those passes."""
    import numpy as np

    dl = run.learn.dls.test_dl(frame, with_labels=True)
    kept = [t for t in dl.after_item.fs if getattr(t, "in_tta", True)]
    if len(kept) < len(dl.after_item.fs):
        dl = dl.new(after_item=kept)
    with run.learn.no_bar():
        probs, targets = run.learn.tta(dl=dl, n=n)
    return probs.numpy().astype(np.float32), targets.numpy().astype(int)


def _topk(targets, probs, n_classes: int) -> dict:
    from ..metrics import topk_accuracy

    return {int(k): float(v) for k, v in topk_accuracy(targets, probs, ks=tuple(k for k in TOPK if k <= n_classes)).items()}


def lever_metrics(run: TrainingRun, frame: "pd.DataFrame", targets) -> dict:
    """What ``run.config``'s evaluation levers add for ``frame``: ``tta`` {k: top-k} when ``config.tta``;
    ``perturbed`` {k: top-k} of the strongly perturbed photos (:mod:`.robustness`), and
    ``perturbed_background`` / ``perturbed_scale`` of the photos with the garment on another background /
    smaller in the frame (:mod:`.backdrops`; not part of ``perturbed``, whose figures earlier runs
    recorded), when ``config.hard_check``."""
    from .robustness import perturbed_probs

    out, n_classes = {}, len(run.splits.classes)
    if run.config.tta:
        out["tta"] = _topk(targets, predict_tta(run, frame)[0], n_classes)
    if run.config.hard_check:
        for key, kind, _ in PERTURBED:
            probs = perturbed_probs(run.learn.model, frame, model_size(run), run.backbone.mean, run.backbone.std,
                                    crop=run.config.crop == "bbox", kind=kind)
            out[key] = _topk(targets, probs, n_classes)
    return out


def evaluate(run: TrainingRun, n_grid: int = 16) -> dict:
    """Test-split metrics and figures; suspect labels from valid + test predictions.

    Writes metrics.json, confusion_matrix.png, top_losses.png, test_predictions.csv,
    suspect_labels.csv and suspect_labels.png, at the kept model's size (:func:`model_size`).
    Suspect labels use out-of-sample probabilities: the valid and test items, which the model never
    trained on (valid picked the best epoch, which barely fits it); train items are not judged,
    as that would need cross-validated training.
    Returns the metrics dict; figures are in ``run.evaluation["figures"]``.
    """
    import numpy as np
    import pandas as pd


    set_size(run, model_size(run))
    classes = run.splits.classes
    test = run.splits.test
    probs, targets = predict(run, test)
    metrics = classification_metrics(targets, probs, classes)
    metrics["split"] = run.splits.test_split
    bboxes = list(test["bbox"]) if "bbox" in test.columns else None
    figures = {
        "confusion_matrix": plots.confusion_figure(np.array(metrics["confusion_matrix"]), classes,
                                                title=f"confusion matrix ({run.splits.test_split})"),
        "top_losses": plots.top_losses_figure(test, targets, probs, classes, n=n_grid, bboxes=bboxes),
    }
    preds = probs.argmax(1)
    if run.config.leak_check:  # insight (#14): accuracy without the test photos copied in train/valid
        from ..insight.stage import leak_report

        metrics["leaks"] = leak_report(run.splits.train, run.splits.valid, test, targets, preds,
                                       run.splits.test_split)
    save_csv(run.output_dir / "test_predictions.csv", pd.DataFrame({
        "path": test["path"], "label": test["label"], "predicted": [classes[i] for i in preds],
        "prob": probs[np.arange(len(preds)), preds]}))

    metrics.update(lever_metrics(run, test, targets))
    if run.splits.test_split == "valid":
        pool, pool_probs, pool_targets = test, probs, targets
        valid = {"n": metrics["n"], "topk": metrics["topk"], **{k: metrics[k] for k in ("tta",) if k in metrics}}
    else:
        v_probs, v_targets = predict(run, run.splits.valid)
        pool = pd.concat([run.splits.valid, test], ignore_index=True)
        pool_probs, pool_targets = np.concatenate([v_probs, probs]), np.concatenate([v_targets, targets])
        # what levers are chosen on (the test split is for the final numbers only): the perturbed checks
        # too, so that a lever against a perturbation is chosen on held-out photos, not the test ones (#30)
        valid = {"n": len(v_targets), "topk": _topk(v_targets, v_probs, len(classes)),
                 **lever_metrics(run, run.splits.valid, v_targets)}
    suspects = find_suspect_labels(pool, pool_targets, pool_probs, classes)
    save_csv(run.output_dir / "suspect_labels.csv", suspects)
    trust = suspect_caveat(pool_targets, pool_probs)
    if trust["caveat"]:
        log.warning("suspect labels: %d of %d flagged by cleanlab, %s", len(suspects), len(pool), trust["caveat"])
    by_path = dict(zip(pool["path"], pool["bbox"])) if "bbox" in pool.columns else None
    figures["suspect_labels"] = plots.suspect_figure(
        suspects, n=n_grid, bboxes=[by_path[p] for p in suspects["path"]] if by_path else None,
        caveat=trust["caveat"])
    for name, fig in figures.items():
        save_figure(run.output_dir / f"{name}.png", fig)

    result = {
        "test": metrics,
        "valid": valid,
        "stages": {k: v.to_dict() for k, v in run.results.items()},
        "best": run.best,
        "counts": {"train": len(run.splits.train), "valid": len(run.splits.valid), "test": len(test),
                   "classes": len(classes), "skipped_images": len(run.splits.skipped)},
        "valid_from_train": run.splits.valid_from_train,
        "skipped_images": [{"path": p, "reason": r} for p, r in run.splits.skipped],
        "suspect_labels": {"n": len(suspects), "judged": len(pool),
                           "method": "cleanlab.filter.find_label_issues on valid+test predictions", **trust},
    }
    write_json(run.output_dir / "metrics.json", result)
    run.evaluation = {"metrics": result, "figures": figures}
    for name, m in ((f"{run.splits.test_split}", metrics), ("valid", valid)):
        for key, label in (("topk", ""), ("tta", " with TTA")) + tuple((k, f" ({lab})") for k, _, lab in PERTURBED):
            if key in m:
                log.info("%s accuracy%s on %d images: %s", name, label, m["n"],
                         ", ".join(f"top-{k} {v:.3f}" for k, v in m[key].items()))
    return result


def export_caveat(run: TrainingRun) -> str | None:
    """Why the model about to be exported is no use, as one sentence, or None: no epoch was trained
    (``epochs=0``), or its test top-1 is within two binomial standard errors of chance (the larger of
    1/classes and always guessing the test split's commonest class)."""
    import math

    if not sum(r.epochs_run for r in run.results.values()):
        return "no epoch was trained (epochs 0,0,0): the head is untrained and its predictions are chance"
    metrics = run.evaluation.get("metrics", {}).get("test", {})
    n, accuracy = metrics.get("n", 0), metrics.get("accuracy")
    if not n or accuracy is None:
        return None
    labels = run.splits.test["label"]
    chance = max(1 / len(run.splits.classes), float(labels.value_counts().max()) / len(labels))
    if accuracy <= chance + 2 * math.sqrt(chance * (1 - chance) / n):
        return (f"test top-1 {accuracy:.3f} on {n} photos is at chance (guessing the commonest class scores "
                f"{chance:.3f}): the model has learnt nothing usable")
    return None


def export(run: TrainingRun) -> Path:
    """Write model.safetensors + model.json (classes, arch, sizes, normalisation, head, metrics, config).

    A model :func:`export_caveat` finds useless is still written (the run's other outputs describe
    it), with a warning and the caveat in model.json's ``metrics.warning``."""
    caveat = export_caveat(run)
    if caveat:
        log.warning("exporting a model that is no use: %s", caveat)
    b = run.backbone
    archs = (run.config.arch, *run.config.ensemble)
    dims = getattr(run.learn.model, "feature_dims", [b.feature_dim])  # an ensemble's: one per member
    members = (tuple({"arch": a, "feature_dim": d, "head": dict(DEFAULT_HEAD)} for a, d in zip(archs, dims))
               if run.config.ensemble else ())
    info = ModelInfo(
        arch="+".join(archs), classes=tuple(run.splits.classes), size=run.config.size, final_size=model_size(run),
        mean=tuple(b.mean), std=tuple(b.std), feature_dim=sum(dims), backbone_source=b.source,
        head=dict(DEFAULT_HEAD), crop=run.config.crop, best=run.best,
        metrics={**run.evaluation.get("metrics", {}).get("test", {}), **({"warning": caveat} if caveat else {})},
        train_config=run.config.to_dict(), members=members)
    return export_model(run.output_dir, run.learn.model.eval(), info)
