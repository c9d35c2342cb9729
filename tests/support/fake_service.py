"""A stand-in for the scoring service: the real app (routes, validation, middleware) without I/O.

:func:`serving.main.create_app` takes the function that builds the service; the unit tests give
it one that returns :class:`FakeService`, so every request-validation case runs through the
real FastAPI app in-process (``TestClient``), in milliseconds, without Redis, Feast or MLflow.
The fake records what reached it: a refused request must never get there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from serving.metrics import Metrics


@dataclass
class FakeModels:
    """No model registry: ``/ready`` reports one loaded."""

    bundle: Any = None
    registry_missing: str | None = None


@dataclass
class FakeService:
    """Answers every valid request with a fixed score; remembers what it was asked."""

    metrics: Metrics = field(default_factory=Metrics)
    models: FakeModels = field(default_factory=FakeModels)
    scored: list[Any] = field(default_factory=list)
    labelled: list[Any] = field(default_factory=list)
    closed: bool = False

    def score(self, items: Sequence[Any], received: float) -> list[dict[str, Any]]:
        """A LEGIT answer of the response schema for each transaction."""
        self.scored.extend(items)
        return [
            {
                "transaction_id": item.transaction_id or f"generated-{len(self.scored)}",
                "prediction": "LEGIT",
                "probability": 0.1,
                "threshold": 0.5,
                "review_threshold": 0.3,
                "explanation": [],
                "model_version": {"name": "fake", "version": "0", "run_id": ""},
                "cold_start": True,
                "features": {},
            }
            for item in items
        ]

    def ingest_labels(self, items: Sequence[Any]) -> dict[str, Any]:
        """Every label applied."""
        self.labelled.extend(items)
        return {"received": len(items), "applied": len(items), "duplicates": []}

    def readiness(self) -> tuple[list[str], list[str]]:
        """Always ready."""
        return [], []

    def refresh_gauges(self) -> None:
        """Nothing to refresh."""

    def close(self) -> None:
        """Remember the shutdown."""
        self.closed = True
