"""How every ``fraud`` command answers bad input: ``error: <what, where>`` on stderr, exit code 2.

The README promises that shape for every command, and the tests hold each command to it. One
helper keeps the promise in one place: a command either raises :func:`fail` with its message,
or runs its work inside :func:`user_errors`, which turns the errors a user can fix (a bad
``params.yaml``, a missing file, a malformed CSV) into the same answer; never a traceback.
Warnings that do not stop a command go through :func:`warn`.

This module sits on the ground floor so that every step's command line can use it without
importing another step.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer

EXIT_BAD_INPUT = 2  # what every command exits with on bad input (0 and 1 are verdicts)


def fail(message: str) -> typer.Exit:
    """Print ``error: <message>`` on stderr; return the exit to raise.

    Args:
        message: What is wrong and where (a file, a key, an option).

    Returns:
        ``typer.Exit(2)``: ``raise fail("...") from exc``.
    """
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_BAD_INPUT)


def warn(message: str) -> None:
    """Print ``warning: <message>`` on stderr (the command goes on)."""
    typer.echo(f"warning: {message}", err=True)


@contextmanager
def user_errors(*kinds: type[BaseException]) -> Iterator[None]:
    """Answer the given errors with ``error: <the exception's message>`` and exit code 2.

    Args:
        *kinds: The exception types a user can fix by changing their input.

    Raises:
        typer.Exit: Code 2, when one of ``kinds`` was raised inside the block.
    """
    try:
        yield
    except kinds as exc:
        raise fail(str(exc)) from exc
