"""The online side: Feast's Redis layout, its value codec, and the writer that keeps state fresh.

- :mod:`~feature_engine.online.redis_layout`: keys, field hashes, codecs, the client: the one
  module that uses Feast's private Redis names.
- :mod:`~feature_engine.online.value_encoding`: Feast ``ValueProto`` bytes for whole columns.
- :mod:`~feature_engine.online.writer`: fold a scored transaction or a label into Redis.
- :mod:`~feature_engine.online.online_only`: the API's offline store: none.
"""
