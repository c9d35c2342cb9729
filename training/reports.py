"""Plots of a training run: PR, ROC, confusion at the threshold, calibration reliability."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fraud_platform.contracts import LABEL
from training.evaluation import Evaluation


def _pyplot() -> Any:
    """Matplotlib's pyplot on the file-only Agg backend (no display on servers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_plots(evaluation: Evaluation, out_dir: Path) -> list[Path]:
    """PR and ROC curves (every model and the baseline), confusion matrix, reliability.

    The first three are on the holdout; the confusion matrix is the selected model's at its
    threshold. The reliability plot bins each model's calibrated probabilities (out of fold,
    where the calibration was fitted, and on the holdout, where it was not) against the
    observed fraud rate: on the diagonal, a probability means what it says.

    Args:
        evaluation: The evaluated model and baseline.
        out_dir: Folder for the PNG files (created if missing).

    Returns:
        The files written.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_curve

    plt = _pyplot()
    out_dir.mkdir(parents=True, exist_ok=True)
    y_true = evaluation.holdout[LABEL].to_numpy(dtype=int)
    runs = [(result.kind, result) for result in evaluation.candidates]
    runs.append(("baseline", evaluation.baseline))
    written: list[Path] = []

    figure, axes = plt.subplots(figsize=(6, 5))
    for name, result in runs:
        precision, recall, _ = precision_recall_curve(y_true, result.holdout_scores)
        axes.step(
            recall, precision, where="post", label=f"{name} (AP {result.holdout['pr_auc']:.3f})"
        )
    axes.axhline(
        y_true.mean(), linestyle=":", color="grey", label=f"fraud rate {y_true.mean():.3f}"
    )
    axes.set(xlabel="recall", ylabel="precision", title="Precision-recall, holdout", ylim=(0, 1.02))
    axes.legend(loc="upper right")
    written.append(_save(figure, out_dir / "pr_curve.png"))

    figure, axes = plt.subplots(figsize=(6, 5))
    for name, result in runs:
        fpr, tpr, _ = roc_curve(y_true, result.holdout_scores)
        axes.plot(fpr, tpr, label=f"{name} (AUC {result.holdout['roc_auc']:.3f})")
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey")
    axes.set(xlabel="false-positive rate", ylabel="true-positive rate", title="ROC, holdout")
    axes.legend(loc="lower right")
    written.append(_save(figure, out_dir / "roc_curve.png"))

    model = evaluation.model
    flagged = (model.holdout_scores >= model.threshold).astype(int)
    matrix = confusion_matrix(y_true, flagged, labels=[0, 1])
    figure, axes = plt.subplots(figsize=(4.5, 4))
    axes.imshow(matrix, cmap="Blues")
    for (row, column), count in np.ndenumerate(matrix):
        axes.text(column, row, f"{count:,}", ha="center", va="center", color="black")
    axes.set(
        xticks=[0, 1],
        yticks=[0, 1],
        xticklabels=["legit", "fraud"],
        yticklabels=["legit", "fraud"],
        xlabel="predicted",
        ylabel="actual",
        title=f"Holdout at threshold {model.threshold:.3f}",
    )
    written.append(_save(figure, out_dir / "confusion_matrix.png"))
    written.append(_reliability(evaluation, out_dir / "reliability.png"))
    return written


def _reliability(evaluation: Evaluation, path: Path) -> Path:
    """Observed fraud rate against calibrated probability, in quantile bins, per model."""
    from sklearn.calibration import calibration_curve

    plt = _pyplot()
    y_train = evaluation.train[LABEL].to_numpy(dtype=int)
    y_holdout = evaluation.holdout[LABEL].to_numpy(dtype=int)
    figure, axes = plt.subplots(figsize=(6, 5))
    for result in evaluation.candidates:
        for part, y, scores, style in (
            ("out of fold", y_train, result.oof_scores, "-"),
            ("holdout", y_holdout, result.holdout_scores, "--"),
        ):
            observed, predicted = calibration_curve(y, scores, n_bins=10, strategy="quantile")
            axes.plot(predicted, observed, style, marker="o", label=f"{result.kind}, {part}")
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfect calibration")
    axes.set(
        xlabel=f"calibrated probability ({evaluation.model.calibration.method})",
        ylabel="observed fraud rate",
        title="Reliability (quantile bins)",
    )
    axes.legend(loc="upper left", fontsize="small")
    return _save(figure, path)


def _save(figure: Any, path: Path) -> Path:
    """Write a figure and free it."""
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    figure.clf()
    import matplotlib.pyplot as plt

    plt.close(figure)
    return path
