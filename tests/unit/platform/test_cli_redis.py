"""An unreachable Redis is bad configuration: ``error: ...`` naming REDIS_URL, exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import redis

from fraud_cli import main as fraud_main
from fraud_platform.console import EXIT_BAD_INPUT
from fraud_platform.redis_server import free_port

FRAUD = str(Path(sys.executable).with_name("fraud"))


def test_materialize_with_no_redis_exits_2_naming_the_setting(tmp_path: Path) -> None:
    """Through the installed ``fraud`` script: no traceback, the URL and the setting named."""
    features = tmp_path / "data" / "features"
    features.mkdir(parents=True)
    # The offline state's latest time is all materialize reads before it needs Redis.
    pd.DataFrame(
        {"customer_id": ["c"], "event_timestamp": [pd.Timestamp("2026-01-01", tz="UTC")]}
    ).to_parquet(features / "customer_activity.parquet")
    url = f"redis://127.0.0.1:{free_port()}/0"
    done = subprocess.run(
        [FRAUD, "features", "materialize", "--end", "2026-01-02T00:00:00"],
        env={"PATH": "/usr/bin:/bin", "PROJECT_ROOT": str(tmp_path), "REDIS_URL": url},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == EXIT_BAD_INPUT, done.stdout + done.stderr
    assert f"error: cannot reach Redis at {url} (REDIS_URL" in done.stderr
    assert "Traceback" not in done.stderr
    assert "feast materialize" not in done.stdout  # stopped before the Feast CLI ran


def test_any_command_losing_redis_exits_2(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """The entry point answers a Redis connection error raised anywhere in a command."""
    from fraud_platform.settings import get_settings

    def lost() -> None:
        raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:1.")

    monkeypatch.setattr(fraud_main, "app", lost)
    with pytest.raises(SystemExit) as exited:
        fraud_main.main()
    assert exited.value.code == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert f"error: cannot reach Redis at {get_settings().redis_url} (REDIS_URL" in err
    assert "Error 111" in err


def test_other_errors_still_raise(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise KeyError("a bug, not bad input")

    monkeypatch.setattr(fraud_main, "app", broken)
    with pytest.raises(KeyError):
        fraud_main.main()
