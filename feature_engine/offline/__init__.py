"""The offline side: raw events in, Parquet state tables out, and the store Feast reads them with.

- :mod:`~feature_engine.offline.events`: raw data plus the API's journals, the one reader.
- :mod:`~feature_engine.offline.pipeline`: the ``features`` build (DuckDB).
- :mod:`~feature_engine.offline.latest_rows`: the latest row per entity, what materialize loads.
- :mod:`~feature_engine.offline.duckdb_store`: Feast's DuckDB offline store with an as-of join.
"""
