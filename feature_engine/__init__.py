"""The feature engine: what turns ``feature_repo``'s declarations into exact features.

``feature_repo/`` holds what a user edits and Feast reads (the declaration tables, the Feast
objects, ``feature_store.yaml``); this package is the machinery behind it, in rooms named for
what they do. It never imports ``feature_repo``: the declarations come in as arguments.

- :mod:`feature_engine.declarations`: the declaration language (velocity rows, derived
  features, feature services).
- :mod:`feature_engine.state`: the per-entity velocity state (raw events and tiles), its
  stored fields, the fold of one event into it, and the features at request time.
- :mod:`feature_engine.offline`: the raw events, the offline state build (DuckDB), the
  latest-rows sidecars and the as-of DuckDB offline store Feast uses.
- :mod:`feature_engine.materialize`: Feast's materialization engine writing to Redis.
- :mod:`feature_engine.online`: Feast's Redis layout and value codec, and the online writer
  (compare-and-set ingestion of a scored transaction or an arrived label).
- :mod:`feature_engine.spark`: the Spark profile (session, the state build on Spark).
- :mod:`feature_engine.store`: the door to Feast (open the store, historical and online
  features, the Feast CLI).
"""
