"""Request and response bodies of the scoring API (Pydantic v2)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$"  # 1-64 chars, no spaces or markup

Identifier = Annotated[StrictStr, Field(min_length=1, max_length=64, pattern=ID_PATTERN)]
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


class Contribution(BaseModel):
    """One feature's share of the score: coefficient times standardized value (log-odds)."""

    feature: str
    value: float
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
    features: dict[str, float | int]


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
