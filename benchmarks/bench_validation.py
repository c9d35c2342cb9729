"""The ``/predict`` body's validation: today's Pydantic model against msgspec, per body.

Measures, in one process, the CPU one request body costs from its bytes to a validated object:

* ``pydantic dict``: what FastAPI does today (``json.loads`` of the body, then
  ``TransactionIn.model_validate``);
* ``pydantic json``: Pydantic's fastest mode, ``TransactionIn.model_validate_json`` (the JSON
  parsed by pydantic-core in Rust);
* ``msgspec``: ``msgspec.json.decode`` into a ``Struct`` with the same rules (strict types,
  bounds, no unknown fields, the id rule and the time guard in ``__post_init__``).

Each is also timed on bad bodies (a string amount, an unknown field, a bad id, a future time),
and the error each gives is printed: a 422 must name the field (msgspec says ``at `$.amount```).
Figures: median of ``--rounds`` of ``--n`` bodies each, microseconds per body.

Run: ``.venv/bin/python -m benchmarks.bench_validation [--n 20000] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec

from fraud_platform.ids import ID_MAX_LENGTH, check_id
from serving.schemas import MIN_AMOUNT, TransactionIn, time_guard

Id = Annotated[str, msgspec.Meta(max_length=ID_MAX_LENGTH)]


class TransactionStruct(msgspec.Struct, forbid_unknown_fields=True):
    """The same rules as :class:`serving.schemas.TransactionIn`, in msgspec."""

    timestamp: datetime
    customer_id: Id
    merchant_id: Id
    amount: Annotated[float, msgspec.Meta(ge=MIN_AMOUNT, le=1e12)]
    lat: Annotated[float, msgspec.Meta(ge=-90, le=90)]
    long: Annotated[float, msgspec.Meta(ge=-180, le=180)]
    transaction_id: Id | None = None

    def __post_init__(self) -> None:
        """The id rule and the time guard (msgspec reports a ValueError with its field)."""
        for name in ("customer_id", "merchant_id", "transaction_id"):
            value = getattr(self, name)
            if value is not None:
                try:
                    check_id(value)
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
        try:
            self.timestamp = time_guard().check(self.timestamp)
        except ValueError as exc:
            raise ValueError(f"timestamp: {exc}") from None


def _bodies(n: int) -> list[bytes]:
    start = datetime.now(UTC) - timedelta(days=1)
    return [
        json.dumps(
            {
                "transaction_id": f"t-{i}",
                "timestamp": (start + timedelta(seconds=i)).isoformat(),
                "customer_id": f"C{i % 5000:06d}",
                "merchant_id": f"M{i % 300:04d}",
                "amount": 5 + (i % 97) * 1.37,
                "lat": 40.0 + (i % 7) / 10,
                "long": -74.0 - (i % 5) / 10,
            }
        ).encode()
        for i in range(n)
    ]


BAD = {
    "string amount": {"amount": "12.5"},
    "unknown field": {"colour": "red"},
    "bad id": {"customer_id": "a\u0001b"},
    "future time": {"timestamp": (datetime.now(UTC) + timedelta(days=3)).isoformat()},
}

DECODERS: dict[str, Callable[[bytes], Any]] = {
    "pydantic dict": lambda body: TransactionIn.model_validate(json.loads(body)),
    "pydantic json": TransactionIn.model_validate_json,
    "msgspec": msgspec.json.Decoder(TransactionStruct).decode,
}


def _time(decode: Callable[[bytes], Any], bodies: list[bytes]) -> float:
    started = time.perf_counter()
    for body in bodies:
        decode(body)
    return (time.perf_counter() - started) / len(bodies) * 1e6


def _error(decode: Callable[[bytes], Any], body: bytes) -> str:
    try:
        decode(body)
    except Exception as exc:  # each library's own validation error
        return str(exc).replace("\n", " | ")[:110]
    return "(accepted)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="bodies per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (median)")
    args = parser.parse_args()
    good = _bodies(args.n)
    base = json.loads(good[0])
    for decode in DECODERS.values():  # same answers on a good body
        decoded = decode(good[0])
        assert decoded.amount == base["amount"] and decoded.customer_id == base["customer_id"]
    times: dict[str, list[float]] = {name: [] for name in DECODERS}
    for _ in range(args.rounds):  # alternating: machine noise hits all alike
        for name, decode in DECODERS.items():
            times[name].append(_time(decode, good))
    reference = statistics.median(times["pydantic dict"])
    print(f"{args.n} bodies x {args.rounds} rounds; median us per valid body:")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:14s} {median:7.2f} us  ({median / reference:.2f}x today's)")
    print("errors on bad bodies (a 422 must name the field):")
    for case, change in BAD.items():
        body = json.dumps({**base, **change}).encode()
        for name, decode in DECODERS.items():
            print(f"  {case:14s} {name:14s} {_error(decode, body)}")


if __name__ == "__main__":
    main()
