"""The CSV importer: Kaggle schema and generic mappings round trip; bad files fail clearly."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from data.importer import import_csv, load_mapping
from data.schema import RAW_TABLES
from data.validate import RawDataError, validate_raw

from .data_helpers import write_kaggle_csv

Tables = dict[str, pd.DataFrame]
DELAY_DAYS = 30.0


def _expected_subset(tables: Tables, kaggle: pd.DataFrame) -> Tables:
    """The part of the generated tables that the Kaggle rows describe."""
    txns = tables["transactions"]
    txns = txns[txns["transaction_id"].isin(kaggle["trans_num"])].reset_index(drop=True)
    customers = tables["customers"]
    merchants = tables["merchants"]
    return {
        "transactions": txns,
        "customers": customers[customers["customer_id"].isin(txns["customer_id"])],
        "merchants": merchants[merchants["merchant_id"].isin(txns["merchant_id"])],
        "labels": tables["labels"].set_index("transaction_id").loc[txns["transaction_id"]],
    }


@pytest.mark.parametrize("index_column", [True, False], ids=["index-column", "no-index-column"])
def test_kaggle_csv_round_trip(
    small_tables: Tables, kaggle_rows: pd.DataFrame, tmp_path: Path, index_column: bool
) -> None:
    path = write_kaggle_csv(kaggle_rows, tmp_path / "fraudTrain.csv", index_column=index_column)
    imported = import_csv(path, chargeback_delay_days=DELAY_DAYS)
    expected = _expected_subset(small_tables, kaggle_rows)
    validate_raw(imported)
    for name, schema in RAW_TABLES.items():
        assert list(imported[name].columns) == schema.names

    pd.testing.assert_frame_equal(
        imported["transactions"], expected["transactions"], check_exact=True
    )

    labels = imported["labels"]
    assert list(labels["transaction_id"]) == list(expected["transactions"]["transaction_id"])
    assert list(labels["is_fraud"]) == list(expected["labels"]["is_fraud"])
    delay = labels["label_timestamp"] - imported["transactions"]["timestamp"]
    assert (delay == pd.Timedelta(days=DELAY_DAYS)).all()
    assert set(labels.loc[labels["is_fraud"] == 1, "fraud_pattern"]) <= {"unknown"}
    assert set(labels.loc[labels["is_fraud"] == 0, "fraud_pattern"]) == {"none"}

    customers = imported["customers"].set_index("customer_id").sort_index()
    want_customers = expected["customers"].set_index("customer_id").sort_index()
    assert list(customers.index) == list(want_customers.index)
    np.testing.assert_array_equal(customers["home_lat"], want_customers["home_lat"])
    np.testing.assert_array_equal(customers["home_long"], want_customers["home_long"])
    # No open dates in the source: every card is "not known to have opened after the start".
    assert (customers["created_at"] == imported["transactions"]["timestamp"].min()).all()

    merchants = imported["merchants"].set_index("merchant_id").sort_index()
    want_merchants = expected["merchants"].set_index("merchant_id").sort_index()
    assert list(merchants["category"]) == list(want_merchants["category"])
    np.testing.assert_allclose(merchants["lat"], want_merchants["lat"], rtol=1e-12)
    np.testing.assert_allclose(merchants["long"], want_merchants["long"], rtol=1e-12)


def test_kaggle_merchant_location_is_the_mean_and_order_is_restored(tmp_path: Path) -> None:
    rows = pd.DataFrame(
        {
            "trans_date_trans_time": [
                "2019-01-01 00:00:30",
                "2019-01-01 00:00:10",
                "2019-01-01 00:00:10",
            ],
            "cc_num": ["4000", "4000", "5000"],
            "merchant": ["fraud_A", "fraud_A", "fraud_B"],
            "category": ["grocery_pos", "grocery_pos", "misc_net"],
            "amt": [10.0, 20.0, 30.0],
            "lat": [40.0, 40.0, 41.0],
            "long": [-75.0, -75.0, -76.0],
            "trans_num": ["b", "c", "a"],
            "merch_lat": [40.2, 40.4, 41.1],
            "merch_long": [-75.2, -75.4, -76.1],
            "is_fraud": [0, 1, 0],
        }
    )
    imported = import_csv(write_kaggle_csv(rows, tmp_path / "t.csv"), chargeback_delay_days=1)
    assert list(imported["transactions"]["transaction_id"]) == ["a", "c", "b"]
    merchant_a = imported["merchants"].set_index("merchant_id").loc["fraud_A"]
    assert merchant_a["lat"] == pytest.approx(40.3)
    assert merchant_a["long"] == pytest.approx(-75.3)
    # Home comes from the cardholder's address, not from where they spent.
    home = imported["customers"].set_index("customer_id").loc["4000"]
    assert (home["home_lat"], home["home_long"]) == (40.0, -75.0)


GENERIC_MAPPING = {
    "transaction_id": "id",
    "customer_id": "card",
    "merchant_id": "shop",
    "timestamp": "when",
    "amount": "value",
    "lat": "y",
    "long": "x",
    "is_fraud": "fraud",
    "label_timestamp": "known_at",
}


def _generic_csv(small_tables: Tables, path: Path) -> pd.DataFrame:
    rows = small_tables["transactions"].head(200).merge(small_tables["labels"], on="transaction_id")
    frame = pd.DataFrame(
        {
            "id": rows["transaction_id"],
            "card": rows["customer_id"],
            "shop": rows["merchant_id"],
            "when": rows["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "value": rows["amount"],
            "y": rows["lat"],
            "x": rows["long"],
            "fraud": rows["is_fraud"],
            "known_at": rows["label_timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
            "ignored": "extra column",
        }
    )
    frame.sample(frac=1.0, random_state=0).to_csv(path, index=False)  # shuffled on purpose
    return rows


@pytest.mark.parametrize("form", ["dict", "yaml", "json"])
def test_generic_mapping_round_trip(small_tables: Tables, tmp_path: Path, form: str) -> None:
    rows = _generic_csv(small_tables, tmp_path / "bank.csv")
    mapping: dict[str, str] | Path = GENERIC_MAPPING
    if form == "yaml":
        mapping = tmp_path / "mapping.yaml"
        mapping.write_text(yaml.safe_dump(GENERIC_MAPPING))
    elif form == "json":
        mapping = tmp_path / "mapping.json"
        mapping.write_text(json.dumps(GENERIC_MAPPING))
    imported = import_csv(tmp_path / "bank.csv", mapping)

    pd.testing.assert_frame_equal(
        imported["transactions"], small_tables["transactions"].head(200), check_exact=True
    )
    pd.testing.assert_series_equal(imported["labels"]["label_timestamp"], rows["label_timestamp"])
    pd.testing.assert_series_equal(imported["labels"]["is_fraud"], rows["is_fraud"])
    # Unmapped home: the customer's first transaction location stands in.
    first = rows.groupby("customer_id").first()
    customers = imported["customers"].set_index("customer_id")
    np.testing.assert_array_equal(customers["home_lat"], first.loc[customers.index, "lat"])
    np.testing.assert_array_equal(customers["home_long"], first.loc[customers.index, "long"])
    assert set(imported["merchants"]["category"]) == {"unknown"}


def test_mapping_errors_name_the_field(tmp_path: Path) -> None:
    incomplete = {k: v for k, v in GENERIC_MAPPING.items() if k != "amount"}
    with pytest.raises(RawDataError, match="column amount: required field not mapped"):
        load_mapping(incomplete)
    with pytest.raises(RawDataError, match="column colour: unknown field"):
        load_mapping({**GENERIC_MAPPING, "colour": "c"})
    bad_file = tmp_path / "mapping.yaml"
    bad_file.write_text("- just\n- a list\n")
    with pytest.raises(RawDataError, match=r"mapping\.yaml: mapping must map"):
        load_mapping(bad_file)


def _break(frame: pd.DataFrame, row: int, column: str, value: object) -> pd.DataFrame:
    broken = frame.astype({column: object}).copy()
    broken.loc[row, column] = value
    return broken


# (change to the Kaggle rows, text expected in the message); the CSV line is row + 2.
BAD_KAGGLE = [
    pytest.param(
        lambda f: f.drop(columns="amt"), "line 1, column amt: missing column", id="missing-column"
    ),
    pytest.param(
        lambda f: _break(f, 5, "trans_date_trans_time", "2019-13-45 25:00:00"),
        "line 7, column trans_date_trans_time: cannot parse timestamp '2019-13-45 25:00:00'",
        id="bad-timestamp",
    ),
    pytest.param(
        lambda f: _break(f, 5, "amt", -3.5),
        "line 7, column amt: amount must be > 0, got -3.5",
        id="negative-amount",
    ),
    pytest.param(
        lambda f: _break(f, 5, "amt", "12,5"),
        "line 7, column amt: not a number: '12,5'",
        id="unparsable-amount",
    ),
    pytest.param(
        lambda f: _break(f, 8, "merch_lat", 95.5),
        "line 10, column merch_lat: latitude must be in [-90, 90], got 95.5",
        id="merch-lat-range",
    ),
    pytest.param(
        lambda f: _break(f, 9, "merch_long", -190.0),
        "line 11, column merch_long: longitude must be in [-180, 180], got -190.0",
        id="merch-long-range",
    ),
    pytest.param(
        lambda f: _break(f, 2, "lat", -91.0), "line 4, column lat: latitude", id="home-lat-range"
    ),
    pytest.param(
        lambda f: _break(f, 2, "long", 181.0),
        "line 4, column long: longitude",
        id="home-long-range",
    ),
    pytest.param(
        lambda f: _break(f, 3, "trans_num", ""),
        "line 5, column trans_num: missing value",
        id="missing-id",
    ),
    pytest.param(
        lambda f: _break(f, 4, "trans_num", f.loc[1, "trans_num"]),
        "line 6, column trans_num: duplicate id",
        id="duplicate-id",
    ),
    pytest.param(
        lambda f: _break(f, 4, "is_fraud", 2),
        "line 6, column is_fraud: must be 0 or 1",
        id="bad-label",
    ),
    pytest.param(
        lambda f: _break(f, 2, "merchant", "fraud_Kirlin\tand Sons"),
        "line 4, column merchant: id 'fraud_Kirlin\\tand Sons' must be 1-128 printable",
        id="control-character-in-merchant",
    ),
    pytest.param(
        lambda f: _break(f, 6, "trans_num", "x" * 129),
        "line 8, column trans_num: id",
        id="overlong-transaction-id",
    ),
]


@pytest.mark.parametrize(("change", "expected"), BAD_KAGGLE)
def test_bad_kaggle_csv_names_file_line_and_column(
    kaggle_rows: pd.DataFrame,
    tmp_path: Path,
    change: Callable[[pd.DataFrame], pd.DataFrame],
    expected: str,
) -> None:
    path = write_kaggle_csv(change(kaggle_rows), tmp_path / "transactions.csv", index_column=False)
    with pytest.raises(RawDataError) as caught:
        import_csv(path)
    assert f"transactions.csv {expected}" in str(caught.value)
    assert sorted(tmp_path.iterdir()) == [path]  # nothing written next to it


def test_several_bad_values_are_all_reported(kaggle_rows: pd.DataFrame, tmp_path: Path) -> None:
    broken = _break(_break(kaggle_rows, 3, "amt", -1.0), 7, "merch_long", 500.0)
    path = write_kaggle_csv(broken, tmp_path / "transactions.csv", index_column=False)
    with pytest.raises(RawDataError) as caught:
        import_csv(path)
    message = str(caught.value)
    assert "line 5, column amt" in message
    assert "line 9, column merch_long" in message


def test_label_time_not_after_transaction_is_rejected(small_tables: Tables, tmp_path: Path) -> None:
    _generic_csv(small_tables, tmp_path / "bank.csv")
    frame = pd.read_csv(tmp_path / "bank.csv", dtype=str)
    frame.loc[2, "known_at"] = frame.loc[2, "when"]
    frame.to_csv(tmp_path / "bank.csv", index=False)
    with pytest.raises(RawDataError, match=r"bank\.csv line 4, column known_at: label time"):
        import_csv(tmp_path / "bank.csv", GENERIC_MAPPING)


def test_missing_file_is_a_file_not_found_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        import_csv(tmp_path / "nope.csv")


REAL_MERCHANT_NAMES = [
    "fraud_Kirlin and Sons",
    "fraud_Bins-Howell, Ltd.",
    "fraud_O'Keefe-Schmitt",
    "fraud_Café Müller & Söhne",
    '"Quoted", Inc.',
]


def test_real_looking_ids_round_trip_through_csv_and_parquet(
    kaggle_rows: pd.DataFrame, tmp_path: Path
) -> None:
    """Spaces, commas, quotes, apostrophes and accents survive import and Parquet unchanged."""
    import pyarrow.parquet as pq

    from data.generate import write_tables

    renamed = kaggle_rows.copy()
    old = sorted(renamed["merchant"].unique())
    mapping = {
        m: REAL_MERCHANT_NAMES[i % len(REAL_MERCHANT_NAMES)] + f" #{i}" for i, m in enumerate(old)
    }
    renamed["merchant"] = renamed["merchant"].map(mapping)
    renamed["cc_num"] = "card " + renamed["cc_num"].astype(str) + ", Ñ"
    path = write_kaggle_csv(renamed, tmp_path / "real.csv", index_column=True)
    imported = import_csv(path)
    assert set(imported["transactions"]["merchant_id"]) == set(mapping.values())
    assert set(imported["merchants"]["merchant_id"]) == set(mapping.values())
    write_tables(imported, tmp_path / "raw")
    back = pq.read_table(tmp_path / "raw" / "transactions.parquet").to_pandas()
    assert list(back["merchant_id"]) == list(imported["transactions"]["merchant_id"])
    assert list(back["customer_id"]) == list(imported["transactions"]["customer_id"])


# The shared folder beside the checkout (/work/shared when the checkout is /work/main).
SPARKOV_SAMPLE = (
    Path(__file__).resolve().parents[4] / "shared" / "data" / "sparkov_2023_150cards.csv.gz"
)


def test_every_merchant_of_real_sparkov_output_is_a_valid_id() -> None:
    """The shared Sparkov sample: 65 % of its merchant names hold a space or a comma."""
    from fraud_platform.ids import invalid_id_mask

    if not SPARKOV_SAMPLE.exists():
        pytest.skip(f"shared sample not present at {SPARKOV_SAMPLE}")
    frame = pd.read_csv(SPARKOV_SAMPLE, usecols=["merchant", "cc_num", "trans_num"], dtype=str)
    with_space = frame["merchant"].str.contains(r"[ ,]", regex=True).mean()
    assert with_space > 0.5  # the sample really exercises the rule
    for column in ("merchant", "cc_num", "trans_num"):
        assert not invalid_id_mask(frame[column]).any(), column
