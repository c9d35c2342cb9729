"""What the generated data allows on compromised-merchant fraud: an oracle that knows every breach.

Run: ``.venv/bin/python -m benchmarks.bench_merchant_ceiling [--profile long_history]
[--style ordinary|cash_out]``.

The generator's ``compromised_merchant`` pattern in its ``ordinary`` style (``data/generate.py``)
labels as fraud a share (``compromised_merchant_fraud_share``) of a breached merchant's ordinary
transactions from its breach date on. Such a fraud row is drawn exactly like the legitimate
rows of the same merchant in the same period, so no feature can tell the two apart: whatever a
model knows, it can at best rank every row of a breached merchant after its breach above the
rest. This script scores the
training holdout (the same rows and split as ``fraud train run``: labeled, complete history,
latest ``train.holdout_fraction`` of the period) with that oracle and prints:

1. the oracle's compromised-merchant slice PR-AUC (the slice of
   :func:`training.evaluation.slice_metrics`: the pattern's frauds against every legitimate
   row), with its ties as one threshold (scikit-learn's average precision) and with the ties
   broken at random (mean of 20 orders);
2. the overall ceiling: every other fraud ranked first (perfect), the oracle's rows next, then
   the rest; PR-AUC and precision and recall at an alert budget of 5 per 1,000;
3. the share of fraud among the oracle's rows: the precision bound of any alert on them.

Under the ``cash_out`` style (``--style``, or a profile that sets it) the fraud rows are new
rows that differ from the merchant's ordinary ones, so the oracle is no ceiling there: it shows
how little knowing the breach alone gives (its precision is the fraud share of the merchant's
later traffic). Nothing is trained or retrieved: the data is generated in memory (10 s for
``long_history``) with the breach dates the generator drew. Figures are printed, nothing is
asserted.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ALERTS_PER_1000 = 5.0
TIE_ORDERS = 20


def _ap(y: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, scores))


def _random_ties(y: np.ndarray, scores: np.ndarray, rng: np.random.Generator) -> float:
    """Mean average precision over random orders of the tied scores (scores are small ints)."""
    return float(
        np.mean([_ap(y, scores + rng.random(len(scores)) * 0.5) for _ in range(TIE_ORDERS)])
    )


def _at_budget(y: np.ndarray, scores: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """Precision and recall of the top 5 per 1,000 rows (ties in random order)."""
    k = round(len(y) * ALERTS_PER_1000 / 1000)
    order = np.lexsort((rng.random(len(y)), -scores))[:k]
    caught = int(y[order].sum())
    return caught / k, caught / int(y.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default=None, help="Data profile (default: generate).")
    parser.add_argument(
        "--style", choices=("ordinary", "cash_out"), help="Override compromised_merchant_style."
    )
    args = parser.parse_args()

    from data.generate import generate, write_tables
    from fraud_platform.contracts import FRAUD_PATTERN, LABEL, TIMESTAMP
    from fraud_platform.settings import PROJECT_ROOT, load_params
    from training.dataset import labeled_transactions
    from training.evaluation import holdout_mask, slice_metrics

    params = load_params(PROJECT_ROOT / "params.yaml")
    generate_params = params.generate_profile(args.profile)
    if args.style:
        generate_params = generate_params.model_copy(
            update={"compromised_merchant_style": args.style}
        )
    breaches: dict[str, pd.Timestamp] = {}
    tables = generate(generate_params, params.seed, breaches=breaches)
    with tempfile.TemporaryDirectory(prefix="merchant-ceiling-") as folder:
        raw_dir = Path(folder)
        write_tables(tables, raw_dir)
        labeled, _ = labeled_transactions(raw_dir, service=params.train.feature_service)
    holdout = labeled.loc[holdout_mask(labeled[TIMESTAMP], params.train.holdout_fraction)]
    holdout = holdout.reset_index(drop=True)

    start = holdout["merchant_id"].map(breaches)
    in_breach = (start.notna() & (holdout[TIMESTAMP] >= start)).to_numpy()
    y = holdout[LABEL].to_numpy(dtype=int)
    pattern = holdout[FRAUD_PATTERN].astype(str).to_numpy()
    compromised = (y == 1) & (pattern == "compromised_merchant")
    other_fraud = (y == 1) & ~compromised
    print(
        f"profile {args.profile or 'default'} ({generate_params.compromised_merchant_style}): "
        f"{len(breaches)} breached merchants; holdout "
        f"{len(holdout):,} rows, {int(y.sum()):,} frauds, {int(compromised.sum()):,} of them "
        f"compromised-merchant ({compromised.sum() / max(y.sum(), 1):.1%})"
    )
    print(
        f"oracle rows (at a breached merchant, on or after its breach): {int(in_breach.sum()):,}; "
        f"fraud among them {y[in_breach].mean():.3f} "
        f"(compromised-merchant frauds outside them: {int((compromised & ~in_breach).sum())})"
    )

    rng = np.random.default_rng(0)
    oracle = in_breach.astype(float)
    slices = slice_metrics(holdout, oracle, threshold=1.0)
    slice_mask = (y == 0) | (pattern == "compromised_merchant")
    print(
        f"compromised-merchant slice PR-AUC of the oracle: ties as one threshold "
        f"{slices['compromised_merchant']['pr_auc']:.4f}, ties in random order "
        f"{_random_ties(y[slice_mask], oracle[slice_mask], rng):.4f}"
    )

    ceiling = np.where(other_fraud, 2.0, oracle)
    precision, recall = _at_budget(y, ceiling, rng)
    print(
        f"overall ceiling (other frauds perfect, then the oracle's rows): PR-AUC ties "
        f"{_ap(y, ceiling):.4f}, random order {_random_ties(y, ceiling, rng):.4f}; at "
        f"{ALERTS_PER_1000:g} alerts per 1,000: precision {precision:.3f}, recall {recall:.3f}"
    )
    # The same ceiling with the compromised-merchant frauds left unranked (score 0): what the
    # other patterns alone give, for the share the merchant pattern adds.
    others_only = np.where(other_fraud, 2.0, 0.0)
    alone = _random_ties(y, others_only, rng)
    print(f"other frauds perfect, no merchant knowledge: PR-AUC {alone:.4f}")


if __name__ == "__main__":
    main()
