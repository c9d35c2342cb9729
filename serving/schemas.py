"""Request and response bodies of the scoring API (Pydantic v2)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    field_validator,
)

from data.schema import FRAUD_PATTERNS
from fraud_platform.ids import ID_MAX_LENGTH, ID_RULE, ID_SCHEMA_PATTERN, check_id

# The one id rule (fraud_platform.ids): the pattern documents it in the OpenAPI schema; the
# validator enforces it with a message that states the rule.
Identifier = Annotated[
    StrictStr,
    Field(
        max_length=ID_MAX_LENGTH,
        json_schema_extra={"pattern": ID_SCHEMA_PATTERN},
        description=ID_RULE,
    ),
    AfterValidator(check_id),
]
MIN_AMOUNT = 0.001


@dataclass(frozen=True)
class TimeGuard:
    """Which event times the API accepts: ``[earliest, now + max_future_skew]`` (UTC).

    A transaction in the future would be folded into its card's and its merchant's state and
    sit there, newest of all, until that date: every later real transaction would be "out of
    order". So the future is refused beyond a small clock skew, as is anything before the
    configured start (state times are microseconds since the epoch, never negative).
    """

    earliest: datetime
    max_future_skew: timedelta

    def check(self, value: datetime, now: datetime | None = None) -> datetime:
        """The time in UTC, or ``ValueError`` saying what is wrong with it."""
        try:
            value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        except (OverflowError, ValueError) as exc:  # 0001-01-01T00:00+01:00, 9999-12-31T23:59-01:00
            raise ValueError("is not a representable UTC time") from exc
        if value < self.earliest:
            raise ValueError(
                f"must be at or after {self.earliest.isoformat()} (serve.min_timestamp)"
            )
        latest = (now or datetime.now(UTC)) + self.max_future_skew
        if value > latest:
            skew = self.max_future_skew.total_seconds()
            raise ValueError(
                f"is in the future: later than now + {skew:g} s "
                "(serve.max_future_skew_seconds); is the sender's clock right?"
            )
        return value


@lru_cache(maxsize=1)
def time_guard() -> TimeGuard:
    """The guard from ``params.yaml`` (``serve``), read once per process."""
    from fraud_platform.settings import get_settings, load_params

    serve = load_params(get_settings().paths.params_file).serve
    return TimeGuard(serve.min_timestamp, timedelta(seconds=serve.max_future_skew_seconds))


class TransactionIn(BaseModel):
    """One card transaction to score; ``lat``/``long`` is where it happens."""

    model_config = ConfigDict(extra="forbid")

    transaction_id: Identifier | None = None
    timestamp: datetime = Field(description="ISO 8601; naive means UTC.")
    customer_id: Identifier
    merchant_id: Identifier
    # At least the smallest currency unit in use (0.001): a denormal amount such as 5e-324 made
    # a later transaction's amount_to_avg_30d overflow to infinity (found by schemathesis).
    amount: float = Field(ge=MIN_AMOUNT, allow_inf_nan=False, le=1e12)
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
        return time_guard().check(value)

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


LabelPattern = Literal["none", "unknown", *FRAUD_PATTERNS]  # type: ignore[valid-type]


class LabelIn(BaseModel):
    """A label that arrived: a chargeback (fraud) or a confirmation (legitimate)."""

    model_config = ConfigDict(extra="forbid")

    transaction_id: Identifier = Field(description="The labelled transaction; one label each.")
    merchant_id: Identifier = Field(description="Where the transaction happened.")
    is_fraud: StrictBool
    label_timestamp: datetime | None = Field(
        default=None,
        description="When the label became known (ISO 8601, naive means UTC); now by default.",
    )
    fraud_pattern: LabelPattern = Field(
        default="unknown", description="The fraud pattern, when known (none for legitimate)."
    )

    @field_validator("label_timestamp", mode="before")
    @classmethod
    def _iso_string(cls, value: Any) -> Any:
        if value is not None and not isinstance(value, str):
            raise ValueError("must be an ISO 8601 string, e.g. 2026-01-02T03:04:05Z")
        return value

    @field_validator("label_timestamp")
    @classmethod
    def _utc_in_range(cls, value: datetime | None) -> datetime | None:
        return None if value is None else time_guard().check(value)


class LabelsIn(BaseModel):
    """Labels posted together (limit: ``serve.batch_limit``)."""

    model_config = ConfigDict(extra="forbid")

    labels: list[LabelIn] = Field(min_length=1)


class LabelsOut(BaseModel):
    """What the labels did: folded into the online label state, or already known."""

    received: int
    applied: int = Field(description="Labels folded into their merchants' online label state.")
    duplicates: list[str] = Field(
        description="Transaction ids whose label was posted before (idempotent: not folded again)."
    )


class Contribution(BaseModel):
    """One feature's exact share of the score's raw log-odds, whichever model serves.

    LightGBM: its TreeSHAP value; the regression: coefficient times standardised value. All
    contributions plus the model's base value add up to the raw log-odds, which the
    calibration turns into ``probability``.
    """

    feature: str
    value: float | None = Field(description="null when the feature is unknown")
    contribution: float = Field(description="change of the raw log-odds due to this feature")


class ModelVersionOut(BaseModel):
    """The registered model version that scored the transaction."""

    name: str
    version: str
    run_id: str


class ScoreOut(BaseModel):
    """The verdict on one transaction, with its explanation and the features it saw."""

    transaction_id: str
    prediction: Literal["FRAUD", "REVIEW", "LEGIT"] = Field(
        description="FRAUD (block) at or above threshold; REVIEW (queue for an analyst) at or "
        "above review_threshold and below threshold; LEGIT below both."
    )
    probability: float
    threshold: float
    review_threshold: float = Field(
        description="The REVIEW band's lower end; equal to threshold when the model has no "
        "REVIEW band."
    )
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
        description="Features without a value (taken at their training mean by the model): "
        "those a card without history has none of (gap since its last transaction, speed, "
        "30-day baseline, home), or that the online state could not answer exactly at this "
        "time, e.g. a merchant's label rate asked for long before the labels it holds.",
    )


class BatchOut(BaseModel):
    """Verdicts in request order."""

    results: list[ScoreOut]


class HealthOut(BaseModel):
    """Liveness."""

    status: Literal["ok"] = "ok"


class ReadyOut(BaseModel):
    """Readiness: when not ready, why; when ready but something is wrong, warnings."""

    ready: bool
    reasons: list[str] = []
    warnings: list[str] = []
    model_version: ModelVersionOut | None = None


class ErrorOut(BaseModel):
    """A refused request: 401, 413, 400, or 503 (``error`` is ``service_unavailable``)."""

    detail: str
    error: str | None = None


class FieldErrorOut(BaseModel):
    """One invalid field of a request."""

    field: str = Field(description="Dotted path of the field, e.g. ``transactions.0.amount``.")
    loc: list[str]
    msg: str
    type: str


class ValidationErrorOut(BaseModel):
    """422: the request body is not a valid transaction; every invalid field is named."""

    detail: list[FieldErrorOut]
