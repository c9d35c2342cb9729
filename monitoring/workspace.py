"""Drift and consistency as a history: every check's Evidently snapshot, in one workspace.

One Evidently project per feature service (``fraud_scoring_v1``, ...), created on first use
with a dashboard: the share of drifted features and the consistency mismatches over time, one
point per check. Each drift check adds the very snapshot its HTML report was rendered from
(:func:`monitoring.report.write_report`); each consistency check adds a small snapshot of its
per-feature verdicts (:func:`consistency_snapshot`). ``evidently ui --workspace
reports/evidently`` (``fraud ui evidently``) shows them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import fraud_platform

if TYPE_CHECKING:
    from monitoring.consistency import ConsistencyResult

DRIFT_TAG = "drift"
CONSISTENCY_TAG = "consistency"


def _project(workspace: Any, name: str) -> Any:
    """The project named ``name``, created with its dashboard the first time."""
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import counter_panel, line_plot_panel

    found = workspace.search_project(name)
    if found:
        return found[0]
    project = workspace.create_project(
        name, description=f"Drift and online/offline consistency of the feature service {name}"
    )
    dashboard = project.dashboard
    dashboard.add_panel(
        counter_panel(
            title="Share of drifted features (last check)",
            values=[
                PanelMetric(
                    legend="share",
                    metric="evidently:metric_v2:DriftedColumnsCount",
                    metric_labels={"value_type": "share"},
                )
            ],
            size="half",
            aggregation="last",
        )
    )
    dashboard.add_panel(
        line_plot_panel(
            title="Share of drifted features per check",
            values=[
                PanelMetric(
                    legend="share",
                    metric="evidently:metric_v2:DriftedColumnsCount",
                    metric_labels={"value_type": "share"},
                )
            ],
            size="half",
        )
    )
    dashboard.add_panel(
        line_plot_panel(
            title="Consistency: mismatching feature values per check",
            values=[
                PanelMetric(
                    legend="mismatches",
                    metric="evidently:metric_v2:SumValue",
                    metric_labels={"column": "mismatches"},
                )
            ],
            size="full",
        )
    )
    return project


def add_snapshot(workspace_dir: Path, service: str, snapshot: Any, *, name: str) -> str:
    """Add one check's snapshot to the service's project in the workspace.

    Args:
        workspace_dir: The Evidently workspace folder (created if missing).
        service: The feature service: the project's name.
        snapshot: An Evidently ``Snapshot`` (what ``Report.run`` returns).
        name: The snapshot's name in the UI (what kind of check, and when).

    Returns:
        The snapshot's id.
    """
    fraud_platform.quiet_third_party_warnings()  # Evidently's import-time notices (see there)
    from evidently.ui.workspace import Workspace

    workspace_dir.mkdir(parents=True, exist_ok=True)
    workspace = Workspace(str(workspace_dir))
    project = _project(workspace, service)
    ref = workspace.add_run(project.id, snapshot, include_data=False, name=name)
    return str(ref.id)


def consistency_snapshot(result: ConsistencyResult) -> Any:
    """An Evidently snapshot of one consistency check: one row per feature of the model.

    Columns ``compared``, ``mismatches`` and ``mismatch_rate``; the snapshot holds their sums
    and the largest rate, which the project's dashboard plots per check.
    """
    import pandas as pd

    fraud_platform.quiet_third_party_warnings()  # Evidently's import-time notices (see there)
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import MaxValue, RowCount, SumValue

    frame = pd.DataFrame(
        {
            "feature": [f.feature for f in result.features],
            "compared": [float(f.compared) for f in result.features],
            "mismatches": [float(f.mismatches) for f in result.features],
            "mismatch_rate": [f.mismatch_rate for f in result.features],
        }
    )
    definition = DataDefinition(
        numerical_columns=["compared", "mismatches", "mismatch_rate"],
        categorical_columns=["feature"],
    )
    report = Report(
        [
            RowCount(),
            SumValue(column="compared"),
            SumValue(column="mismatches"),
            MaxValue(column="mismatch_rate"),
        ],
        tags=[CONSISTENCY_TAG],
    )
    return report.run(current_data=Dataset.from_pandas(frame, data_definition=definition))
