"""The per-entity state and the features computed from it (pure functions, no I/O).

- :mod:`~feature_engine.state.tiles`: an entity's velocity state (raw events of the lateness
  region, tiles of partial aggregates before it).
- :mod:`~feature_engine.state.fields`: the stored views' fields, derived from the declarations.
- :mod:`~feature_engine.state.fold`: fold one transaction or label into a state (online and
  batch alike).
- :mod:`~feature_engine.state.request`: every feature of a request at time t from the state
  (what the on-demand view runs).
"""
