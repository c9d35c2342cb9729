"""Every way a request can be invalid, through the real app on a fake scoring service.

The routes, the request models (``serving/schemas.py``), the validation error handler and the
body-limit middleware are the production ones (:func:`serving.main.create_app`); only the
scoring service is a fake (``tests/support/fake_service.py``), so each case runs in
milliseconds instead of against the live stack. A refused request must never reach the
service: each test checks that too. ``tests/integration/serving/test_api.py`` keeps one live
smoke case of each kind.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import pytest
from fastapi.testclient import TestClient

from fraud_platform.settings import Settings
from serving.main import create_app
from tests.support.bodies import VALID_TRANSACTION
from tests.support.fake_service import FakeService

if TYPE_CHECKING:
    from serving.service import ScoringService

API_KEY = "test-key-1"


class Api:
    """The app on a fake service, and a client that sends the API key."""

    def __init__(self, client: TestClient, service: FakeService) -> None:
        self.client = client
        self.service = service

    def post(self, path: str, body: Any, key: str | None = API_KEY) -> Any:
        headers = {"X-API-Key": key} if key else {}
        return self.client.post(path, json=body, headers=headers)


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    service = FakeService()
    fake = cast("ScoringService", service)  # duck-typed: the routes' part of the service
    app = create_app(Settings(api_keys=f"{API_KEY},second-key"), build=lambda _: fake)
    with TestClient(app) as client:
        yield Api(client, service)
    assert service.closed  # the lifespan closed it


def _refused(api: Api, response: Any, field: str) -> None:
    """422 naming ``field``, and nothing scored."""
    assert response.status_code == 422, response.text
    assert field in {err["field"] for err in response.json()["detail"]}


@pytest.fixture(autouse=True)
def _nothing_reaches_the_service(api: Api) -> Iterator[None]:
    scored, labelled = len(api.service.scored), len(api.service.labelled)
    yield
    assert len(api.service.scored) == scored and len(api.service.labelled) == labelled


def test_a_valid_transaction_reaches_the_service(api: Api) -> None:
    before = len(api.service.scored)
    response = api.post("/predict", GOOD)
    assert response.status_code == 200, response.text
    assert response.json()["prediction"] == "LEGIT"
    assert len(api.service.scored) == before + 1
    api.service.scored.pop()  # keep the autouse check about refused requests honest


def test_the_api_key_is_required(api: Api) -> None:
    assert api.post("/predict", GOOD, key=None).status_code == 401
    assert api.post("/predict", GOOD, key="wrong").status_code == 401
    assert api.post("/labels", {"labels": []}, key=None).status_code == 401


GOOD = VALID_TRANSACTION

BAD_FIELDS = [
    ("amount", 0),
    ("amount", -5),
    ("amount", 5e-324),  # denormal: made amount_to_avg_30d of the next transaction infinite
    ("amount", 0.0009),
    ("amount", "12.5"),
    ("amount", "NaN"),
    ("amount", "Infinity"),
    ("amount", None),
    ("amount", True),
    ("amount", 1e300),
    ("amount", 10**400),
    ("amount", {"nested": [1, 2]}),
    ("lat", 90.0001),
    ("lat", -91),
    ("lat", "north"),
    ("long", 180.5),
    ("long", -181),
    ("long", [1]),
    ("timestamp", "yesterday"),
    ("timestamp", 1767225600),
    ("timestamp", "2026-13-01T00:00:00"),
    ("timestamp", "1960-01-01T00:00:00Z"),
    ("timestamp", "0001-01-01T00:00:00+01:00"),  # before year 1 in UTC: OverflowError once
    ("timestamp", "9999-12-31T23:59:59-01:00"),  # after year 9999 in UTC
    ("timestamp", "2199-12-31T23:59:59Z"),  # representable, but far in the future
    ("timestamp", None),
    ("customer_id", ""),
    ("customer_id", "x" * 129),
    ("customer_id", "   "),
    ("customer_id", "tab\there"),
    ("customer_id", 12345),
    ("merchant_id", None),
    ("merchant_id", "line\nbreak"),
    ("merchant_id", "nul\u0000"),
    ("merchant_id", "c1\u0085control"),
    ("transaction_id", ""),
    ("transaction_id", "del\u007f"),
]


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS)
def test_bad_field_is_422_naming_it(api: Api, field: str, value: Any) -> None:
    _refused(api, api.post("/predict", GOOD | {field: value}), field)
    # The same item inside a batch is named by its position.
    batch = {"transactions": [GOOD, GOOD | {field: value}]}
    _refused(api, api.post("/predict/batch", batch), f"transactions.1.{field}")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"is_fraud": "yes"}, "labels.0.is_fraud"),
        ({"label_timestamp": "2999-01-01T00:00:00Z"}, "labels.0.label_timestamp"),
        ({"merchant_id": "tab\there"}, "labels.0.merchant_id"),
        ({"fraud_pattern": "aliens"}, "labels.0.fraud_pattern"),
        ({"extra": 1}, "labels.0.extra"),
    ],
)
def test_bad_label_is_422_naming_the_field(api: Api, change: dict, field: str) -> None:
    body = {"transaction_id": "bad-l", "merchant_id": "m", "is_fraud": True} | change
    _refused(api, api.post("/labels", {"labels": [body]}), field)


@pytest.mark.parametrize(
    "missing", ["timestamp", "customer_id", "merchant_id", "amount", "lat", "long"]
)
def test_missing_field_is_422_naming_it(api: Api, missing: str) -> None:
    body = {k: v for k, v in GOOD.items() if k != missing}
    _refused(api, api.post("/predict", body), missing)


def test_unknown_field_is_422(api: Api) -> None:
    _refused(api, api.post("/predict", GOOD | {"is_fraud": 1}), "is_fraud")


RAW_BODIES = [
    b"",
    b"not json",
    b"{",
    b"[]",
    b"null",
    b"42",
    b'"string"',
    b'{"amount": NaN}',
    b'{"amount": 1e999}',
    b'[{"a": [[[[[[]]]]]]}]',
    b"\xff\xfe\x00garbage",
    b'{"transactions": "nope"}',
    b'{"timestamp": {"$gt": ""}, "customer_id": [], "merchant_id": {}, "amount": [1]}',
]


@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
@pytest.mark.parametrize("raw", RAW_BODIES)
def test_junk_bodies_are_422_never_500(api: Api, path: str, raw: bytes) -> None:
    response = api.client.post(
        path, content=raw, headers={"X-API-Key": API_KEY, "Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"]


def test_wrong_content_type_and_huge_body(api: Api) -> None:
    text = api.client.post(
        "/predict",
        content=b"amount=5",
        headers={"X-API-Key": API_KEY, "Content-Type": "text/plain"},
    )
    assert text.status_code == 422
    huge = b'{"customer_id": "' + b"x" * 1_100_000 + b'"}'
    response = api.client.post(
        "/predict", content=huge, headers={"X-API-Key": API_KEY, "Content-Type": "application/json"}
    )
    assert response.status_code == 413


def test_batch_limits(api: Api) -> None:
    too_many = api.post("/predict/batch", {"transactions": [GOOD] * 257})
    assert too_many.status_code == 422
    assert too_many.json()["detail"][0]["field"] == "transactions"
    _refused(api, api.post("/predict/batch", {"transactions": []}), "transactions")
    labels = {"labels": [{"transaction_id": "l", "merchant_id": "m", "is_fraud": False}] * 257}
    _refused(api, api.post("/labels", labels), "labels")
