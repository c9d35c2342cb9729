"""The Spark profile (``FEATURE_PROFILE=spark``): the offline side on Spark.

- :mod:`~feature_engine.spark.session`: the session, configured from
  ``feature_store.spark.yaml``.
- :mod:`~feature_engine.spark.pipeline`: the state build on Spark, through the same per-entity
  fold as the DuckDB build.
"""
