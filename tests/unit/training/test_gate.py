"""The promotion gate's rule for behavioural cases: no regression against the champion."""

from __future__ import annotations

from training.registry import Champion, GateCheck, decide, required_behaviour

BETTER = [
    GateCheck("holdout_pr_auc", True, 0.9, 0.8, "better"),
    GateCheck("holdout_precision", True, 0.7, 0.6, "as precise"),
]


def _cases(**passed: bool) -> list[GateCheck]:
    return [GateCheck(f"behaviour_{name}", ok, 0.5, 0.1, name) for name, ok in passed.items()]


def test_a_case_the_champion_passes_is_required_and_blocks_a_better_challenger() -> None:
    checks = BETTER + required_behaviour(
        _cases(example_request=True, card_testing_burst=False),
        {"behaviour_example_request": True, "behaviour_card_testing_burst": True},
    )
    assert decide(False, Champion("1", 0.8, 0.6), checks) == (False, "behaviour_failed")
    assert decide(True, Champion("1", 0.8, 0.6), checks) == (True, "forced")


def test_a_case_the_champion_fails_too_is_reported_not_required() -> None:
    cases = required_behaviour(
        _cases(example_request=True, card_testing_burst=False),
        {"behaviour_example_request": True, "behaviour_card_testing_burst": False},
    )
    assert [check.required for check in cases] == [True, False]
    assert "the champion fails it too" in cases[1].detail
    assert decide(False, Champion("1", 0.8, 0.6), BETTER + cases) == (True, "challenger_better")


def test_the_first_model_is_promoted_with_its_failing_case_reported() -> None:
    # Real-shaped data has no card-testing bursts to learn from: serving nothing would be worse.
    cases = required_behaviour(_cases(example_request=True, card_testing_burst=False), None)
    assert not any(check.required for check in cases)
    assert decide(False, Champion(None), cases) == (True, "no_champion")


def test_a_worse_challenger_is_kept_out_whatever_its_cases_say() -> None:
    worse = [GateCheck("holdout_pr_auc", False, 0.7, 0.8, "worse"), BETTER[1]]
    cases = required_behaviour(_cases(example_request=True), {"behaviour_example_request": True})
    assert decide(False, Champion("1", 0.8, 0.6), worse + cases) == (False, "champion_kept")
