"""The one place the documentation imports the project: what the generated pages are made of.

The hooks beside this file render the configuration page, the API reference and the velocity
feature table from these objects at build time, so the site cannot drift from the code. When a
module moves, fix its import here and every generated page follows.
"""

from __future__ import annotations

from typing import Any

from feature_engine.declarations import derived_markdown_table, markdown_table
from feature_repo.services import SERVICE_TABLES
from fraud_platform.settings import PROJECT_ROOT, Params, Settings
from serving.main import create_app
from serving.metrics import Metrics

__all__ = [
    "PROJECT_ROOT",
    "Params",
    "Settings",
    "api_metrics",
    "derived_table",
    "openapi_schema",
    "velocity_table",
]


def velocity_table() -> str:
    """The declared velocity features, one row each, with the services that serve them."""
    return markdown_table(SERVICE_TABLES)


def derived_table() -> str:
    """The declared derived (non-velocity) features, one row each, with their services."""
    return derived_markdown_table(SERVICE_TABLES)


def openapi_schema() -> dict[str, Any]:
    """The OpenAPI schema of the production app (routes and models; nothing is started).

    ``create_app`` only assembles the routes: the store, Redis and the model are opened in the
    lifespan, which building the schema never runs. Default settings, so a local ``.env``
    cannot change the published reference.
    """
    # pydantic-settings takes `_env_file` at init; mypy sees only the declared fields.
    return create_app(Settings(_env_file=None)).openapi()  # type: ignore[call-arg]


def api_metrics() -> list[tuple[str, str, str]]:
    """Every metric the API exports: (name as exposed, type, help text), in declaration order.

    A counter ``x`` is exposed as ``x_total``; a histogram as ``x_bucket``, ``x_sum`` and
    ``x_count``.
    """
    families = Metrics().registry.collect()
    return [
        (f.name + "_total" if f.type == "counter" else f.name, f.type, f.documentation)
        for f in families
    ]
