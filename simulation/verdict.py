"""Did the drift check see the shift? Each simulated window judged against what its shift moves.

:data:`EXPECTED_DRIFT` is the one list of what each shift of :mod:`simulation.traffic` is meant
to move; :func:`judge_window` holds the drift check of a window (:mod:`monitoring.drift`)
against it, feature by feature, and says why the window passed or failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from feature_engine.declarations import Aggregation, DriftExpectation, ServiceTable
from feature_repo.services import FEATURE_SERVICE_NAME, SERVICE_TABLES
from fraud_platform.contracts import PROBABILITY
from simulation.traffic import SHIFTS

if TYPE_CHECKING:
    from monitoring.drift import ColumnDrift, DriftResult

Expectation = DriftExpectation
MOVES: Expectation = "moves"
MAY_MOVE: Expectation = "may move"


def _velocity_expectation(shift: str, row: Aggregation) -> Expectation | None:
    """What a shift does to one declared velocity row (feature_engine.declarations).

    ``amount`` (every amount scaled up) moves the card's day-or-longer sums, maxima and means of
    the amount; shorter windows are mostly empty and merchant sums mix in unshifted cards, so
    they may move. ``night`` squeezes traffic into the night: every window may move. ``burst``
    (rapid repeats) moves the card's counts of an hour or less; everything else may move.
    """
    if shift == "amount":
        if row.column != "amount":
            return None
        long_card_amount = row.entity == "customer" and row.window >= timedelta(days=1)
        return MOVES if long_card_amount and row.operation != "last" else MAY_MOVE
    if shift == "night":
        return MAY_MOVE
    if shift == "burst":
        short_card_count = row.entity == "customer" and row.operation == "count"
        return MOVES if short_card_count and row.window <= timedelta(hours=1) else MAY_MOVE
    return None


def _expected(shift: str, service: ServiceTable) -> dict[str, Expectation]:
    """What a shift does to every feature of a service: its declarations say it.

    Velocity rows by :func:`_velocity_expectation`; derived features by their own ``drift``
    (``feature_repo/derived.py``); the model's output (``probability``) by :data:`_PROBABILITY`.
    """
    rows = ((row.name, _velocity_expectation(shift, row)) for row in service.velocity.rows)
    expected = {name: how for name, how in rows if how is not None}
    expected.update({f.name: f.drift[shift] for f in service.derived if shift in f.drift})
    if shift in _PROBABILITY:
        expected[PROBABILITY] = _PROBABILITY[shift]
    return expected


# What the shifts do to the model's output: the amount and the burst move it; the squeezed
# night may.
_PROBABILITY: dict[str, Expectation] = {"amount": MOVES, "night": MAY_MOVE, "burst": MOVES}

# What each shift is meant to move, for the service the API serves by default: the one list the
# simulate verdict checks against, derived from the declarations.
# ``moves``: the shift must make this drift (a check that does not flag it missed the shift).
# ``may move``: a side effect that depends on the window (e.g. the 1 h sums, mostly zero, or
# the velocity features of a squeezed night); flagged or not, it is not held against the check.
# Every other feature is untouched: flagging it is unexpected. ``probability`` is the model's
# output (prediction drift), judged the same way but never counted in the dataset share.
EXPECTED_DRIFT: dict[str, dict[str, Expectation]] = {
    "none": {},
    **{
        shift: _expected(shift, SERVICE_TABLES[FEATURE_SERVICE_NAME])
        for shift in ("amount", "night", "burst")
    },
}


@dataclass(frozen=True)
class FeatureVerdict:
    """One column of a simulated window against what its shift is meant to move.

    Attributes:
        column: Feature name, or ``probability`` for the model's output.
        expected: ``moves``, ``may move``, or ``None`` (untouched by the shift).
        flagged: Whether the drift check flagged it.
        p_value: The test's p-value.
    """

    column: str
    expected: Expectation | None
    flagged: bool
    p_value: float

    @property
    def ok(self) -> bool:
        """False for a missed expected move or an unexpected drift."""
        if self.expected == MOVES:
            return self.flagged
        return self.expected == MAY_MOVE or not self.flagged

    @property
    def status(self) -> str:
        """``drift (expected)``, ``MISSED``, ``UNEXPECTED``, ``stable``, ..."""
        if self.expected == MOVES:
            return "drift (expected)" if self.flagged else "MISSED"
        if self.expected == MAY_MOVE:
            return "drift (allowed)" if self.flagged else "stable (allowed)"
        return "UNEXPECTED" if self.flagged else "stable"


@dataclass(frozen=True)
class WindowVerdict:
    """A drift check of one simulated window, judged against :data:`EXPECTED_DRIFT`.

    The window passes when every feature its shift ``moves`` (and the prediction, when
    listed so) is flagged, and the untouched features that are flagged stay below the dataset
    threshold: ``unexpected / all features < drift_share``. For the control (``none``) that
    is exactly "no dataset drift". A threshold instead of "none at all" because 17 tests at
    p < 0.05 flag one or more features by chance about half the time.

    Attributes:
        shift: The window's shift.
        features: One verdict per model feature.
        prediction: The model output's verdict, when the check had one.
        dataset_drift: The drift check's own dataset verdict.
        share_drifted: Its share of drifted features.
        drift_share: The dataset threshold.
    """

    shift: str
    features: list[FeatureVerdict]
    prediction: FeatureVerdict | None
    dataset_drift: bool
    share_drifted: float
    drift_share: float

    @property
    def columns(self) -> list[FeatureVerdict]:
        """The features, then the prediction when there is one."""
        return self.features + ([self.prediction] if self.prediction else [])

    @property
    def missed(self) -> list[str]:
        """Columns the shift should have moved that were not flagged."""
        return [c.column for c in self.columns if c.expected == MOVES and not c.flagged]

    @property
    def unexpected(self) -> list[str]:
        """Untouched columns that were flagged (the prediction included)."""
        return [c.column for c in self.columns if c.expected is None and c.flagged]

    @property
    def unexpected_share(self) -> float:
        """Share of the model features that drifted without the shift touching them."""
        count = sum(c.expected is None and c.flagged for c in self.features)
        return count / len(self.features) if self.features else 0.0

    @property
    def passed(self) -> bool:
        """Every expected move flagged, and the unexpected ones below the dataset threshold."""
        if self.missed:
            return False
        return self.unexpected_share < self.drift_share

    def explain(self) -> str:
        """One line: why the window passed or failed."""
        parts = []
        if self.missed:
            parts.append(f"missed {', '.join(self.missed)}")
        if self.unexpected:
            parts.append(
                f"unexpected drift in {', '.join(self.unexpected)} "
                f"(share {self.unexpected_share:.2f} vs threshold {self.drift_share})"
            )
        expected = [c.column for c in self.columns if c.expected == MOVES]
        if not parts:
            if expected:
                parts.append(f"all of {', '.join(expected)} flagged, nothing unexpected")
            else:
                parts.append("nothing flagged")
        elif not self.missed and expected:
            parts.insert(0, f"all of {', '.join(expected)} flagged")
        return "; ".join(parts)


def judge_window(shift: str, result: DriftResult) -> WindowVerdict:
    """Judge a drift check of a simulated window against :data:`EXPECTED_DRIFT`.

    Args:
        shift: The window's shift.
        result: The drift check of its logged rows.

    Returns:
        The per-column verdicts and the window's.

    Raises:
        ValueError: For an unknown shift.
    """
    if shift not in EXPECTED_DRIFT:
        raise ValueError(f"unknown shift {shift!r}; choose one of {', '.join(SHIFTS)}")
    expected = EXPECTED_DRIFT[shift]

    def verdict(item: ColumnDrift, name: str) -> FeatureVerdict:
        return FeatureVerdict(
            column=name, expected=expected.get(name), flagged=item.drifted, p_value=item.p_value
        )

    return WindowVerdict(
        shift=shift,
        features=[verdict(f, f.column) for f in result.features],
        prediction=None if result.prediction is None else verdict(result.prediction, PROBABILITY),
        dataset_drift=result.dataset_drift,
        share_drifted=result.share_drifted,
        drift_share=result.drift_share,
    )
