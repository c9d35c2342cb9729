"""The feature services: which features each version serves. Training and serving name one.

A model records the service it was trained on; the API serves it with that service. Bump the
version on any change of a service's feature list or semantics, and keep the old service while
models trained on it are served (``fraud_scoring_v1`` and ``fraud_scoring_v2`` live side by
side, each with its own on-demand view over the one stored state).
"""

from __future__ import annotations

from feature_engine.declarations import ServiceTable, VelocityTable, state_table
from feature_repo.derived import DERIVED_V1, DERIVED_V2
from feature_repo.velocity import VELOCITY, VELOCITY_V2

FEATURE_SERVICE_NAME = "fraud_scoring_v1"  # the default: training's unless params say otherwise

SERVICE_TABLES: dict[str, ServiceTable] = {
    "fraud_scoring_v1": ServiceTable("fraud_scoring_v1", VELOCITY, DERIVED_V1),
    # v1's features plus longer windows and the merchant against its own baseline.
    "fraud_scoring_v2": ServiceTable("fraud_scoring_v2", VELOCITY_V2, DERIVED_V2),
}

# What the stored state keeps: every velocity row of every service.
STATE_VELOCITY: VelocityTable = state_table("velocity_state", SERVICE_TABLES)

# Every service table a process knows, by table name. Feast rebuilds the on-demand view's
# function from its source text in every process that reads the registry, so the function
# names its table (``service_table("fraud_scoring_v1")``) instead of holding it.
_TABLES: dict[str, ServiceTable] = {table.name: table for table in SERVICE_TABLES.values()}


def service_table(name: str) -> ServiceTable:
    """The service table of that name (what an on-demand view's function computes).

    Raises:
        KeyError: If no table of that name is registered in this process.
    """
    try:
        return _TABLES[name]
    except KeyError:
        raise KeyError(f"no service table named {name!r}; known: {sorted(_TABLES)}") from None


def register_table(table: ServiceTable) -> ServiceTable:
    """Make a table known to :func:`service_table` in this process (a test fixture's table)."""
    existing = _TABLES.setdefault(table.name, table)
    if existing != table:
        raise ValueError(f"another service table is already named {table.name!r}")
    return table
