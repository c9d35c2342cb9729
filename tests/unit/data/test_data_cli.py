"""``fraud data generate`` and ``fraud data import``: exit codes, messages, files written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from data.cli import app
from data.schema import RAW_TABLES
from data.validate import read_raw_tables

from .data_helpers import write_kaggle_csv

runner = CliRunner()
PARQUET_FILES = sorted(f"{name}.parquet" for name in RAW_TABLES)


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_generate_writes_the_four_tables_and_a_summary(tmp_path: Path) -> None:
    out = tmp_path / "raw"
    args = ["generate", "--n-customers", "120", "--days", "5", "--seed", "11", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert _files(out) == PARQUET_FILES
    tables = read_raw_tables(out)
    assert len(tables["customers"]) == 120
    assert f"wrote {len(tables['transactions']):,} transactions" in result.stdout
    assert str(out) in result.stdout


def test_generate_seed_option_changes_the_data(tmp_path: Path) -> None:
    for seed in ("1", "2"):
        args = ["generate", "--n-customers", "50", "--days", "3", "--seed", seed]
        assert runner.invoke(app, [*args, "--out", str(tmp_path / seed)]).exit_code == 0
    first = pd.read_parquet(tmp_path / "1" / "transactions.parquet")
    second = pd.read_parquet(tmp_path / "2" / "transactions.parquet")
    assert not first.equals(second)


def test_generate_rejects_a_bad_params_file(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("seed: 1\ngenerate:\n  n_customers: -5\n")
    out = tmp_path / "raw"
    result = runner.invoke(app, ["generate", "--params-file", str(params), "--out", str(out)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert "generate.n_customers" in result.stderr
    assert "Traceback" not in result.output
    assert _files(out) == []


def test_generate_rejects_non_positive_sizes(tmp_path: Path) -> None:
    result = runner.invoke(app, ["generate", "--n-customers", "0", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert _files(tmp_path) == []


def test_import_good_kaggle_csv(kaggle_rows: pd.DataFrame, tmp_path: Path) -> None:
    csv_path = write_kaggle_csv(kaggle_rows, tmp_path / "fraudTrain.csv")
    out = tmp_path / "raw"
    args = ["import", str(csv_path), "--chargeback-delay-days", "10", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert _files(out) == PARQUET_FILES
    tables = read_raw_tables(out)
    assert len(tables["transactions"]) == len(kaggle_rows)
    delay = tables["labels"]["label_timestamp"] - tables["transactions"]["timestamp"]
    assert (delay == pd.Timedelta(days=10)).all()
    assert f"wrote {len(kaggle_rows):,} transactions" in result.stdout


def test_import_bad_csv_exits_2_names_line_and_column_and_keeps_old_tables(
    kaggle_rows: pd.DataFrame, tmp_path: Path
) -> None:
    out = tmp_path / "raw"
    good = write_kaggle_csv(kaggle_rows, tmp_path / "good.csv")
    assert runner.invoke(app, ["import", str(good), "--out", str(out)]).exit_code == 0
    before = {name: (out / name).read_bytes() for name in _files(out)}

    broken = kaggle_rows.astype({"amt": object})
    broken.loc[4, "amt"] = -2.0
    bad = write_kaggle_csv(broken, tmp_path / "bad.csv", index_column=False)
    result = runner.invoke(app, ["import", str(bad), "--out", str(out)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: bad.csv line 6, column amt: amount must be > 0")
    assert "Traceback" not in result.output
    assert {name: (out / name).read_bytes() for name in _files(out)} == before


@pytest.mark.parametrize(
    ("make_args", "expected"),
    [
        pytest.param(lambda d: [str(d / "missing.csv")], "missing.csv", id="missing-csv"),
        pytest.param(
            lambda d: [str(d / "good.csv"), "--mapping", str(d / "nope.yaml")],
            "nope.yaml",
            id="missing-mapping",
        ),
        pytest.param(
            lambda d: [str(d / "good.csv"), "--mapping", str(d / "partial.yaml")],
            "column amount: required field not mapped",
            id="incomplete-mapping",
        ),
    ],
)
def test_import_missing_inputs_exit_2(
    kaggle_rows: pd.DataFrame,
    tmp_path: Path,
    make_args: Callable[[Path], list[str]],
    expected: str,
) -> None:
    write_kaggle_csv(kaggle_rows, tmp_path / "good.csv")
    (tmp_path / "partial.yaml").write_text("transaction_id: trans_num\n")
    out = tmp_path / "raw"
    result = runner.invoke(app, ["import", *make_args(tmp_path), "--out", str(out)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert expected in result.stderr
    assert _files(out) == []
