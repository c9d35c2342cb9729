"""Request and response bodies of the scoring API (Pydantic v2)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr, field_validator

from fraud_platform.ids import ID_MAX_LENGTH, ID_PATTERN, ID_RULE, check_id

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)  # state timestamps are µs since the epoch, >= 0
LATEST = datetime(2200, 1, 1, tzinfo=UTC)

# The one id rule (fraud_platform.ids): the pattern documents it in the OpenAPI schema; the
# validator enforces it with a message that states the rule.
Identifier = Annotated[
    StrictStr,
    Field(max_length=ID_MAX_LENGTH, json_schema_extra={"pattern": ID_PATTERN}, description=ID_RULE),
    AfterValidator(check_id),
]


class TransactionIn(BaseModel):
    """One card transaction to score; ``lat``/``long`` is where it happens."""

    model_config = ConfigDict(extra="forbid")

    transaction_id: Identifier | None = None
    timestamp: datetime = Field(description="ISO 8601; naive means UTC.")
    customer_id: Identifier
    merchant_id: Identifier
    amount: float = Field(gt=0, allow_inf_nan=False, le=1e12)
    lat: float = Field(ge=-90, le=90, allow_inf_nan=False)
    long: float = Field(ge=-180, le=180, allow_inf_nan=False)

    @field_validator("timestamp", mode="before")
    @classmethod
    def _iso_string(cls, value: Any) -> Any:
        if not isinstance(value, str):
            raise ValueError("must be an ISO 8601 string, e.g. 2026-01-02T03:04:05Z")
        return value

    @field_validator("timestamp")
    @classmethod
    def _utc_in_range(cls, value: datetime) -> datetime:
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        if not EARLIEST <= value < LATEST:
            raise ValueError("must be between 1970-01-01 and 2200-01-01 (UTC)")
        return value

    @field_validator("amount", "lat", "long", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        # JSON numbers only: "12.5" strings and booleans are a client bug worth flagging.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("must be a JSON number")
        if isinstance(value, int) and abs(value) > 10**15:
            raise ValueError("number too large")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("must be finite")
        return value


class BatchIn(BaseModel):
    """Several transactions scored in one call (limit: ``serve.batch_limit`` in params.yaml)."""

    model_config = ConfigDict(extra="forbid")

    transactions: list[TransactionIn] = Field(min_length=1)


class Contribution(BaseModel):
    """One feature's share of the score: coefficient times standardized value (log-odds)."""

    feature: str
    value: float | None = Field(description="null when the feature is unknown")
    contribution: float


class ModelVersionOut(BaseModel):
    """The registered model version that scored the transaction."""

    name: str
    version: str
    run_id: str


class ScoreOut(BaseModel):
    """The verdict on one transaction, with its explanation and the features it saw."""

    transaction_id: str
    prediction: Literal["FRAUD", "LEGIT"]
    probability: float
    threshold: float
    explanation: list[Contribution]
    model_version: ModelVersionOut
    cold_start: bool
    features: dict[str, float | int | None] = Field(
        description="Every feature the model saw; null for an unknown one (see unknown_features)."
    )
    lateness_seconds: float = Field(
        default=0.0,
        description="How much older the transaction is than the latest event stored for its "
        "card or merchant (0 when in order).",
    )
    late_beyond_bound: bool = Field(
        default=False,
        description="Older than features.max_lateness_seconds: the velocity features are "
        "computed from what the state still retains and are not exact.",
    )
    unknown_features: list[str] = Field(
        default_factory=list,
        description="Features the online state could not answer exactly at this time (taken "
        "at their training mean by the model), e.g. a merchant's label rate asked for long "
        "before the labels the store already holds.",
    )


class BatchOut(BaseModel):
    """Verdicts in request order."""

    results: list[ScoreOut]


class HealthOut(BaseModel):
    """Liveness."""

    status: Literal["ok"] = "ok"


class ReadyOut(BaseModel):
    """Readiness and, when not ready, why."""

    ready: bool
    reasons: list[str] = []
    model_version: ModelVersionOut | None = None
