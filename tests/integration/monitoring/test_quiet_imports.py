"""Evidently prints no third-party notices, even after Feast made every DeprecationWarning "once".

Feast's modules call ``warnings.simplefilter("once", DeprecationWarning)`` at import, which puts
a filter in front of ours; Evidently's import then printed three notices about its own
dependencies (``numpy.core``, litestar's ``Dependency``) into `fraud monitor consistency` and
`make demo`. A fresh interpreter, as in the CLI: Evidently must not have been imported before.
"""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import numpy as np, pandas as pd
import fraud_platform
import feast.feature_view  # Feast's "once" filters go in front of ours
from monitoring.report import evidently_snapshot
rng = np.random.default_rng(0)
frame = lambda: pd.DataFrame({"amount": rng.normal(size=200)})
evidently_snapshot(frame(), frame(), {"amount": "numerical"}, ks_p_value=0.05, drift_share=0.5)
import evidently.ui.workspace
from monitoring.workspace import add_snapshot  # the workspace import path
print("ok")
"""


def test_evidently_prints_no_third_party_warning_after_feast() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert "Warning" not in done.stderr, done.stderr
