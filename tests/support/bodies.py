"""Request bodies shared by the API's unit tests (fake service) and its live smoke tests."""

from __future__ import annotations

from typing import Any

VALID_TRANSACTION: dict[str, Any] = {
    "timestamp": "2026-02-01T10:00:00Z",
    "customer_id": "val-c",
    "merchant_id": "val-m",
    "amount": 10.0,
    "lat": 1.0,
    "long": 2.0,
}
