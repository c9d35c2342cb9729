"""The declaration tables (velocity rows, derived features, services): rules and what derives."""

from __future__ import annotations

import importlib.util
import math
import re
import sys
from datetime import timedelta
from pathlib import Path
from types import ModuleType

import pytest
from typer.testing import CliRunner

from feature_engine.declarations import (
    Aggregation,
    DerivedFeature,
    ServiceTable,
    VelocityTable,
    derived,
    derived_markdown_table,
    markdown_table,
)
from feature_engine.state.fields import state_fields
from feature_repo.definitions import fraud_definitions
from feature_repo.derived import DERIVED_V1
from feature_repo.services import SERVICE_TABLES, STATE_VELOCITY, register_table, service_table
from feature_repo.velocity import VELOCITY
from fraud_cli.main import app
from tests.support.edge_cases import EXTENDED_SERVICE, EXTENDED_VELOCITY

ROOT = Path(__file__).resolve().parents[3]
README = ROOT / "README.md"
FEATURES_PAGE = ROOT / "docs" / "features.md"
HOOKS = ROOT / "docs" / "hooks"
HOUR = timedelta(hours=1)


def _docs_hook() -> ModuleType:
    """The documentation's build hook, loaded as MkDocs loads it (its folder on the path)."""
    sys.path.insert(0, str(HOOKS))
    try:
        spec = importlib.util.spec_from_file_location(
            "generated_pages", HOOKS / "generated_pages.py"
        )
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(HOOKS))
    return module


def test_the_docs_table_is_generated_from_the_declarations() -> None:
    """The features page asks for the table; the build fills in exactly the declared rows."""
    page = FEATURES_PAGE.read_text(encoding="utf-8")
    assert "<!-- generated: velocity-table -->" in page, "docs/features.md lost its marker"
    assert "| `txn_count_1h` |" not in page, "a pasted copy of the table drifts: keep the marker"
    table = markdown_table(SERVICE_TABLES)
    rendered = _docs_hook().render(page, "features.md")
    assert table.rstrip("\n") in rendered and "<!-- generated:" not in rendered
    assert table.count("\n") == len(STATE_VELOCITY.rows) + 2
    assert "| `txn_count_7d` | customer | count |  | `[floor(t - 7d, 1h), t)` | v2 |" in table
    assert "| `txn_count_1h` | customer | count |  | `[floor(t - 1h, 5min), t)` | v1, v2 |" in table


def test_the_readme_contract_names_every_served_feature() -> None:
    """The README's short contract table is written by hand: it must not forget a feature."""
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## The feature contract\n(.*?)^## ", text, re.S | re.M)
    assert match, "README.md lost its '## The feature contract' section"
    named = set(re.findall(r"`([a-z0-9_]+)`", match.group(1)))
    served = {name for table in SERVICE_TABLES.values() for name in table.feature_names}
    assert served - named == set(), "add these features to the README's contract table"
    assert {row.name for row in STATE_VELOCITY.rows} <= served


def test_the_cli_prints_the_table() -> None:
    result = CliRunner().invoke(app, ["features", "declarations"])
    assert result.exit_code == 0
    assert markdown_table(SERVICE_TABLES) in result.output
    assert derived_markdown_table(SERVICE_TABLES) in result.output


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (("x", "customer", "customer_id", "distinct_count", HOUR), "reads one of"),
        (("x", "merchant", "merchant_id", "distinct_count", HOUR), "reads one of"),
        (("x", "customer", "transaction", "sum", HOUR), "needs a column"),
        (("x", "customer", "merchant_id", "mean", HOUR), "numeric column"),
        (("x", "customer", "amount", "median", HOUR), "unknown operation"),
        (("x", "card", "amount", "sum", HOUR), "unknown entity"),
        (("x", "customer", "amount", "sum", timedelta(0)), "positive whole number"),
        (("x", "customer", "amount", "sum", timedelta(milliseconds=1500)), "whole number"),
    ],
)
def test_a_bad_row_is_refused_with_its_name(row: tuple, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as error:
        Aggregation(*row, "d")  # type: ignore[call-arg]
    assert str(error.value).startswith("x:")


def test_a_name_declared_twice_is_refused() -> None:
    row = VELOCITY.rows[0]
    with pytest.raises(ValueError, match=row.name):
        VelocityTable("twice", (*VELOCITY.rows, row))


def test_operations_and_their_empty_windows() -> None:
    def agg(operation: str, column: str = "amount") -> Aggregation:
        return Aggregation("f", "customer", column, operation, HOUR, "d")  # type: ignore[arg-type]

    amounts = [3.0, 1.5, 2.0]
    assert agg("count", "transaction").evaluate(amounts) == 3
    assert agg("sum").evaluate(amounts) == 6.5
    assert agg("max").evaluate(amounts) == 3.0
    assert agg("mean").evaluate(amounts) == pytest.approx(6.5 / 3)
    assert agg("last").evaluate(amounts) == 2.0
    assert agg("distinct_count", "merchant_id").evaluate(["a", "b", "a"]) == 2
    assert agg("count", "transaction").evaluate([]) == 0
    assert agg("sum").evaluate([]) == 0.0 and agg("max").evaluate([]) == 0.0
    assert math.isnan(agg("mean").evaluate([])) and math.isnan(agg("last").evaluate([]))


def test_a_new_row_reaches_the_state_the_views_and_the_service() -> None:
    """What the extended fixture table adds appears everywhere the declared table is read."""
    plain, extended = state_fields(VELOCITY), state_fields(EXTENDED_VELOCITY)
    # v1's merchant rows are one 24-hour count: raw times, 1-hour tiles of counts, nothing else.
    assert [n for n, _ in plain["merchant_activity"]] == [
        "m_ts_us", "m_txn_ids", "m_tiles_1h_index", "m_tiles_1h_count",
        "m_latest_ts_us", "m_lateness_us", "m_distinct_cap",
    ]  # fmt: skip
    merchant = dict(extended["merchant_activity"])
    assert merchant["m_amounts"] == "float64[]" and merchant["m_customer_ids"] == "string[]"
    # A sum over 24 h keeps 1-hour tile sums; a max over 2 h, 5-minute tile maxima; distinct
    # cards, each card's latest time.
    assert merchant["m_tiles_1h_amount_sum"] == merchant["m_tiles_5m_amount_max"] == "float64[]"
    assert merchant["m_seen_customer_ids"] == "string[]"
    # How far back a window reaches: its length plus its tile (the start is rounded down).
    assert EXTENDED_VELOCITY.state_window_us("customer") == (7 * 24 + 1) * 3_600_000_000
    assert VELOCITY.state_window_us("customer") == 25 * 3_600_000_000

    definitions = fraud_definitions(Path("/nowhere"), {"fraud_scoring_v1": EXTENDED_SERVICE})
    transaction_features = definitions.on_demand["fraud_scoring_v1"]
    outputs = [f.name for f in transaction_features.features]
    assert outputs == list(EXTENDED_SERVICE.feature_names)
    new = {row.name for row in EXTENDED_VELOCITY.rows} - {row.name for row in VELOCITY.rows}
    assert new <= set(outputs)
    merchant_schema = {f.name for f in definitions.merchant_activity_fv.schema}
    assert {"m_amounts", "m_customer_ids"} <= merchant_schema
    # Its furthest reach (24 h + a 1-hour tile) plus the 5-minute tile its rows are stamped on.
    assert definitions.merchant_activity_fv.ttl == timedelta(hours=25, minutes=5)
    # The on-demand view's function names its table: Feast rebuilds it from this source text.
    transformation = transaction_features.feature_transformation
    assert transformation is not None
    source = transformation.udf_string
    assert "service_table('velocity_test_extended')" in source


def test_tables_are_found_by_name_and_names_are_unique() -> None:
    v1 = SERVICE_TABLES["fraud_scoring_v1"]
    assert service_table(v1.name) is v1
    with pytest.raises(KeyError, match="no service table named 'nope'"):
        service_table("nope")
    assert register_table(EXTENDED_SERVICE) is EXTENDED_SERVICE  # the same table again: fine
    with pytest.raises(ValueError, match="already named"):
        register_table(ServiceTable(v1.name, VELOCITY, DERIVED_V1[:1]))


def _one(x: object) -> float:
    return 1.0


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"dtype": str, "placement": "request"}, "dtype must be int or float"),
        ({"dtype": float, "placement": "terminal"}, "unknown placement"),
        ({"dtype": float, "placement": "request", "drift": {"weekend": "moves"}}, "drift shifts"),
    ],
)
def test_a_bad_derived_feature_is_refused_with_its_name(kwargs: dict, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as error:
        derived(**kwargs)(_one)
    assert str(error.value).startswith("_one:")


def test_a_derived_feature_is_named_and_described_by_its_function() -> None:
    feature = derived(float, placement="merchant")(_one)
    assert feature.name == "_one" and feature.description == "_one" and feature.compute is _one
    log_amount = next(f for f in DERIVED_V1 if f.name == "log_amount")
    assert log_amount.description == "``log1p(amount)``."
    assert log_amount.dtype is float and log_amount.placement == "request"


def test_a_service_orders_its_features_by_placement_and_refuses_a_name_twice() -> None:
    v1 = SERVICE_TABLES["fraud_scoring_v1"]
    names = list(v1.feature_names)
    velocity = {row.name: row.entity for row in v1.velocity.rows}
    placement = {f.name: f.placement for f in v1.derived}
    order = ["request", "customer-velocity", "customer", "merchant-velocity", "merchant"]
    kinds = [f"{velocity[n]}-velocity" if n in velocity else placement[n] for n in names]
    assert kinds == sorted(kinds, key=order.index)  # grouped, in the documented order
    assert names[:3] == ["log_amount", "hour_of_day", "is_night"]
    assert set(names) == set(velocity) | set(placement)
    twice = DerivedFeature("txn_count_1h", float, _one, "request", "the name of a velocity row")
    with pytest.raises(ValueError, match="features declared twice: \\['txn_count_1h'\\]"):
        ServiceTable("bad", VELOCITY, (twice,))


def test_every_service_serves_every_derived_feature_of_v1() -> None:
    """v2 adds velocity rows only: both versions share the derived list, so their shared
    features mean the same thing."""
    v1, v2 = SERVICE_TABLES["fraud_scoring_v1"], SERVICE_TABLES["fraud_scoring_v2"]
    assert set(v1.feature_names) <= set(v2.feature_names)
    assert v1.derived == v2.derived == DERIVED_V1
