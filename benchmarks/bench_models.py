"""Both models side by side: holdout quality, training time, and the cost of an explanation.

Run: ``.venv/bin/python -m benchmarks.bench_models [--profile long_history] [--root DIR]
[--services fraud_scoring_v1,fraud_scoring_v2] [--before] [--skip-scoring]``.

1. A project root of the data profile (``benchmarks/_setup.py``: generate, offline tables,
   ``feast apply``; steps whose output exists in ``--root`` are skipped, so a big root is
   built once and reused).
2. Retrieval of the training set through the feature service (timed apart: excluded from
   training time); with ``--services``, each service in turn on the same data (before and
   after a change of features, in one run).
3. :func:`training.evaluation.evaluate` with ``params.yaml``'s ``train`` section: for every
   model of ``train.models`` and the request-only baseline, K-fold CV (``train.folds``),
   out-of-fold calibration, the FRAUD and REVIEW thresholds, refit, holdout. Printed per
   model: holdout PR-AUC, ROC-AUC, precision, recall, alerts per 1,000 and net savings per
   1,000 at the FRAUD threshold; the REVIEW band's threshold, precision and alerts, and FRAUD
   and REVIEW together (precision, recall, alerts per 1,000), out of fold (CV mean) and on the
   holdout; the reference example's probability and decision (scored as the API would, from
   the raw tables); the holdout's precision, recall and alerts per 1,000 at each rule's
   out-of-fold threshold (alert budget, target recall, min precision), slices, wall time. A
   rule a model cannot meet falls back to the best F1 (printed), where ``fraud train run``
   would fail; an unmet review rule leaves that model without a band (printed). Each
   model's behavioural cases of the promotion gate (:mod:`training.behaviour`) are printed
   with their score and bar. With
   ``--before``, the same training set is first evaluated the way it was before folds were
   grouped by card: folds over transactions, ``min_precision``, no REVIEW band.
4. One-row scoring on the API's path (:class:`serving.model.ModelBundle`), many repeats over
   holdout rows, in the same run: the plain calibrated probability alone against the
   probability plus the exact explanation (TreeSHAP for trees, coefficient x standardised
   value for the regression) and its top 5. Medians, the difference and the ratio.

Figures are printed, nothing is asserted. No Redis, no MLflow.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from fraud_platform.settings import TrainParams
    from training.evaluation import Evaluation

REPEATS = 20_000  # one-row scorings per measured path


def _one_row_costs(bundle: object, rows: list[dict[str, float]]) -> dict[str, float]:
    """Median microseconds of the plain probability and of probability + explanation."""
    from serving.model import ModelBundle

    assert isinstance(bundle, ModelBundle)
    model = bundle.model
    vectors = [model.vector(row) for row in rows]

    def plain(x: np.ndarray) -> float:
        # The probability alone: raw score of one row, calibrated (what serving cost before
        # explanations, for either family).
        return model.calibration.apply_one(float(model.raw_score(x[np.newaxis, :])[0]))

    def explained(row: dict[str, float]) -> object:
        probability, x, contributions = bundle.score(row)
        return probability, bundle.explain(x, contributions)

    timings: dict[str, list[float]] = {"plain": [], "explained": []}
    for k in range(REPEATS):  # alternate, so drift of the shared machine hits both alike
        i = k % len(rows)
        started = time.perf_counter_ns()
        plain(vectors[i])
        timings["plain"].append((time.perf_counter_ns() - started) / 1e3)
        started = time.perf_counter_ns()
        explained(rows[i])
        timings["explained"].append((time.perf_counter_ns() - started) / 1e3)
    return {name: statistics.median(values) for name, values in timings.items()}


def _report(evaluation: Evaluation, train: TrainParams, example: dict[str, float]) -> None:
    """Print one evaluation: the models' holdout table, operating points, bands and slices."""
    from fraud_platform.contracts import prediction_for

    header = (
        f"{'model':<22}{'PR-AUC':>8}{'ROC-AUC':>9}{'threshold':>11}{'precision':>11}"
        f"{'recall':>8}{'alerts/1k':>10}{'net/1k':>10}{'seconds':>9}"
    )
    print(header)
    for result in [*evaluation.candidates, evaluation.baseline]:
        name = result.kind if result is not evaluation.baseline else "baseline (request only)"
        h = result.holdout
        print(
            f"{name:<22}{h['pr_auc']:>8.4f}{h['roc_auc']:>9.4f}{result.threshold:>11.4f}"
            f"{h['precision']:>11.3f}{h['recall']:>8.3f}{h['alerts_per_1000']:>10.2f}"
            f"{h['net_savings_per_1000']:>10.0f}{result.seconds:>9.1f}"
        )
    for result in evaluation.candidates:
        print(f"  {result.kind} threshold set by {result.point.rule}", end="")
        print(f" (fell back from {result.point.requested})" if result.point.fell_back else "")
        for where, m in (("out of fold (CV mean)", result.cv_mean), ("holdout", result.holdout)):
            print(
                f"  {result.kind} {where}: FRAUD precision {m['precision']:.3f}, recall "
                f"{m['recall']:.3f}, {m['alerts_per_1000']:.2f} per 1,000; REVIEW from "
                f"{result.review_threshold:.4f}: band precision {m['review_precision']:.3f}, "
                f"{m['review_alerts_per_1000']:.2f} per 1,000; FRAUD+REVIEW precision "
                f"{m['flagged_precision']:.3f}, recall {m['flagged_recall']:.3f}, "
                f"{m['flagged_alerts_per_1000']:.2f} per 1,000"
            )
        probability = example[result.kind]
        print(
            f"  {result.kind} reference example (unknown card, 5,000): probability "
            f"{probability:.4f} -> "
            f"{prediction_for(probability, result.threshold, result.review_threshold)}"
        )
        for rule, point in result.rule_points.items():
            print(
                f"  {result.kind} at {rule} (out-of-fold threshold {point['threshold']:.4f}): "
                f"holdout precision {point['precision']:.3f}, recall {point['recall']:.3f}, "
                f"{point['alerts_per_1000']:.2f} alerts per 1,000"
            )
    for result in evaluation.candidates:
        for slice_name, values in result.slices.items():
            pr_auc = f"{values['pr_auc']:.4f}" if "pr_auc" in values else "n/a"
            print(
                f"  {result.kind} slice {slice_name}: PR-AUC {pr_auc}, recall "
                f"{values['recall']:.3f} ({values['frauds']:.0f} frauds)"
            )
    by_kind = {result.kind: result for result in evaluation.candidates}
    if "logistic_regression" in by_kind:
        linear = by_kind["logistic_regression"].holdout["pr_auc"]
        best = evaluation.model
        print(
            f"selected: {best.kind}, holdout PR-AUC {best.holdout['pr_auc']:.4f} = "
            f"{best.holdout['pr_auc'] / linear - 1:+.1%} relative to the regression's {linear:.4f}"
        )
    print(
        f"(folds {train.folds}, threshold rule {train.threshold_rule}, review rule "
        f"{train.review_rule}, calibration {train.calibration})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default=None, help="Data profile (default: generate).")
    parser.add_argument("--root", type=Path, help="Reuse (or create) this root; a temp dir else.")
    parser.add_argument(
        "--services",
        default=None,
        help="Comma-separated feature services, each evaluated on the same data in this run "
        "(default: train.feature_service), e.g. fraud_scoring_v1,fraud_scoring_v2.",
    )
    parser.add_argument(
        "--before",
        action="store_true",
        help="First evaluate each service as before folds were grouped by card: folds over "
        "transactions, threshold_rule min_precision, no REVIEW band (same data, same run).",
    )
    parser.add_argument(
        "--skip-scoring", action="store_true", help="Leave out the one-row scoring costs."
    )
    args = parser.parse_args()

    from benchmarks._setup import prepare_root
    from data.validate import read_raw_tables
    from feature_repo.services import service_table
    from fraud_platform.contracts import ModelTags
    from fraud_platform.settings import load_params
    from serving.model import bundle_from_model
    from training.behaviour import example_score, run_cases
    from training.dataset import load_training_set
    from training.evaluation import ThresholdRuleError, evaluate

    root = args.root or Path(tempfile.mkdtemp(prefix="bench-models-"))
    print(f"root: {root}, profile: {args.profile or 'default'}")
    settings = prepare_root(root, args.profile)
    params = load_params(settings.paths.params_file)
    train = params.train
    services = args.services.split(",") if args.services else [train.feature_service]
    if train.threshold_fallback is None:
        # A benchmark reports every model: a rule one of them cannot meet falls back (loudly,
        # in the progress lines) instead of failing the run as `fraud train run` would.
        train = train.model_copy(update={"threshold_fallback": "best_f1"})
    protocols = [("after", train)]
    if args.before:
        before = {"folds": "by_transaction", "threshold_rule": "min_precision", "review_rule": None}
        protocols.insert(0, ("before", train.model_copy(update=before)))
    tables = read_raw_tables(settings.paths.raw_dir, validate=False)

    evaluation = None
    for service in services:
        started = time.perf_counter()
        training_set = load_training_set(settings, progress=lambda _: None, service=service)
        frame = training_set.frame
        print(
            f"\n=== {service}: {len(training_set.features)} features; retrieval (excluded from "
            f"training time): {len(frame):,} rows, {frame['is_fraud'].mean():.3%} fraud, "
            f"{time.perf_counter() - started:.1f} s"
        )
        for name, protocol in protocols:
            started = time.perf_counter()
            print(f"\n--- {service}, {name}: folds {protocol.folds}, {protocol.threshold_rule}")
            try:
                evaluation = evaluate(training_set, protocol, params.seed, progress=print)
            except ThresholdRuleError as exc:  # an unmet review rule: report it, no band
                print(f"WARNING {exc}: evaluated without a REVIEW band")
                protocol = protocol.model_copy(update={"review_rule": None})
                evaluation = evaluate(training_set, protocol, params.seed, progress=print)
            seconds = time.perf_counter() - started
            print(
                f"\n{service} ({name}): training ({protocol.k_folds}-fold CV + calibration + "
                f"refit + holdout) of {', '.join(protocol.models)} and the baseline on "
                f"{len(evaluation.train):,} training / {len(evaluation.holdout):,} holdout rows: "
                f"{seconds:.1f} s in all"
            )
            example = {
                result.kind: example_score(
                    result.model, service_table(service), tables, params.features
                )
                for result in evaluation.candidates
            }
            _report(evaluation, protocol, example)
            legitimate = evaluation.holdout[evaluation.holdout["is_fraud"] == 0]
            for result in evaluation.candidates:
                for case in run_cases(
                    result.model, legitimate, service_table(service), tables, params.features
                ):
                    print(
                        f"  {result.kind} gate case {case.name}: "
                        f"{'pass' if case.passed else 'FAIL'} ({case.score:.4g} vs bar "
                        f"{case.bar:.4g})"
                    )
    if args.skip_scoring or evaluation is None:
        return

    sample = evaluation.holdout.sample(n=min(2_000, len(evaluation.holdout)), random_state=0)
    print(f"\none-row scoring on the API's path ({services[-1]}), {REPEATS:,} repeats, medians µs:")
    for result in evaluation.candidates:
        tags = ModelTags(threshold=result.threshold, features=tuple(result.features)).to_tags()
        bundle = bundle_from_model(result.model, "bench", "1", "", tags)
        rows = sample[result.features].astype(float).to_dict("records")
        costs = _one_row_costs(bundle, rows)
        print(
            f"  {result.kind:<20} probability {costs['plain']:7.1f}  probability + explanation "
            f"{costs['explained']:7.1f}  added {costs['explained'] - costs['plain']:6.1f} "
            f"({costs['explained'] / costs['plain']:.2f}x)"
        )


if __name__ == "__main__":
    main()
