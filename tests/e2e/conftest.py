"""End-to-end tests: every module leaves no ingestion worker behind (``fraud serve api``'s)."""

from tests.support.live_api import no_ingest_worker_left  # noqa: F401  (autouse fixture)
