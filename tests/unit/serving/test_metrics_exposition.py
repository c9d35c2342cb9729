"""``/metrics`` of one process is its own registry, whatever Feast did to the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving.metrics import MULTIPROCESS_DIR_ENV, PROMETHEUS_DIR_ENV, Metrics, exposition


def test_a_single_process_exports_its_registry_although_feast_set_the_prometheus_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Importing feast.metrics sets PROMETHEUS_MULTIPROC_DIR to an empty folder of its own.
    monkeypatch.setenv(PROMETHEUS_DIR_ENV, str(tmp_path))
    monkeypatch.delenv(MULTIPROCESS_DIR_ENV, raising=False)
    metrics = Metrics()
    metrics.predictions.labels("FRAUD").inc(3)
    text = exposition(metrics.registry).decode()
    assert 'fraud_api_predictions_total{prediction="FRAUD"} 3.0' in text


def test_a_replaced_model_version_reads_zero_not_one() -> None:
    metrics = Metrics()
    metrics.set_model(("fraud-detector", "1", "run-a"))
    metrics.set_model(("fraud-detector", "2", "run-b"))
    families = text_string_to_metric_families(exposition(metrics.registry).decode())
    served = {
        sample.labels["version"]: sample.value
        for family in families
        if family.name == "fraud_api_model_version"
        for sample in family.samples
    }
    assert served == {"1": 0.0, "2": 1.0}
