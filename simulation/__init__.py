"""Simulated traffic through the live API, and whether the drift check tells a shift from none.

A client of the platform, not a part of it: it continues the data-generating process after the
data, sends it (shifted or not) to ``POST /predict``, reads what the API logged and runs
monitoring's drift check on it. ``fraud monitor simulate`` is its command.
"""
