"""The real Feast CLI, as the platform runs it: ``python -m feature_engine.feast_cli ARGS``.

The same click command as the ``feast`` script (``feast.cli.cli:cli``), started the way every
platform process starts: :mod:`fraud_platform` first, whose start-up switch saves typeguard's
re-compilation of Feast's classes (a third of ``feast apply``'s time here), then Feast, then the
platform's warning filters once more, because Feast's modules put ``simplefilter("once", ...)``
in front of the filters installed before them. ``feast apply`` run by hand works the same.
"""

from __future__ import annotations

import sys

import fraud_platform


def feast_command(*args: str) -> list[str]:
    """The command line that runs ``feast ARGS`` this way (in the current interpreter)."""
    return [sys.executable, "-m", "feature_engine.feast_cli", *args]


def main() -> None:
    """Run Feast's click command with this process's arguments (``feast apply``, ...)."""
    from feast.cli.cli import cli  # after fraud_platform: see the module docstring

    fraud_platform.quiet_third_party_warnings()
    cli(prog_name="feast")


if __name__ == "__main__":
    main()
