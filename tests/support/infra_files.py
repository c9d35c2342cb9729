"""Readers of the infrastructure files (compose, Dockerfile, dvc.yaml, Makefile, scripts).

Shared by the file checks in ``tests/unit/infra``; the ``fraud`` command line is walked from
:mod:`fraud_cli.main`, the one module that mounts every step's commands.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from fraud_platform.settings import PROJECT_ROOT

ROOT = PROJECT_ROOT


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined."""

    keyword: str
    args: str
    line: int


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Instructions of a Dockerfile: comments dropped, backslash continuations joined."""
    instructions: list[Instruction] = []
    buffer: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if buffer and line.startswith("#"):
            continue  # comment inside a continued instruction
        if not buffer:
            start = number
        if line.endswith("\\"):
            buffer.append(line[:-1].strip())
            continue
        buffer.append(line)
        text = " ".join(part for part in buffer if part)
        keyword, _, args = text.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
        buffer = []
    return instructions


def dockerfile_stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """Instructions grouped by build stage (each list starts with its FROM)."""
    stages: list[list[Instruction]] = []
    for item in instructions:
        if item.keyword == "FROM":
            stages.append([item])
        elif stages:
            stages[-1].append(item)
    return stages


def global_args(instructions: list[Instruction]) -> dict[str, str]:
    """``ARG name=default`` declared before the first FROM."""
    args: dict[str, str] = {}
    for item in instructions:
        if item.keyword == "FROM":
            break
        if item.keyword == "ARG" and "=" in item.args:
            name, _, default = item.args.partition("=")
            args[name.strip()] = default.strip().strip('"')
    return args


def expand(text: str, variables: dict[str, str]) -> str:
    """Substitute ``${NAME}`` and ``$NAME`` from ``variables`` (unknown ones stay)."""
    return re.sub(
        r"\$\{(\w+)\}|\$(\w+)",
        lambda m: variables.get(m.group(1) or m.group(2), m.group(0)),
        text,
    )


def dockerignore_patterns(path: Path) -> list[str]:
    """Non-comment lines of a .dockerignore, without trailing slashes."""
    if not path.exists():
        return []
    return [
        line.strip().rstrip("/")
        for line in path.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    """Docker's matching: anchored at the context root; ``*`` stays in one folder, ``**`` not."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def is_dockerignored(relative: str, patterns: list[str]) -> bool:
    """Whether .dockerignore excludes ``relative`` or one of its parent folders."""
    parts = Path(relative).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _dockerignore_regex((pattern[1:] if negate else pattern).lstrip("/"))
        if any(regex.match(candidate) for candidate in candidates):
            ignored = not negate
    return ignored


def makefile_targets(path: Path) -> dict[str, str | None]:
    """Explicit targets of a Makefile -> the ``## `` help line right above (None if none)."""
    targets: dict[str, str | None] = {}
    previous = ""
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", line)
        if match and not match.group(1).startswith("."):
            doc = previous[3:].strip() if previous.startswith("## ") else None
            targets.setdefault(match.group(1), doc)
        previous = line
    return targets


def _is_group(command: Any) -> bool:
    # Typer 0.2x vendors click: its groups are not ``click.Group`` instances, so duck-type.
    return hasattr(command, "get_command") and hasattr(command, "list_commands")


def cli_root() -> Any:
    """The ``fraud`` command line as a click-style group (imports every step's Typer app)."""
    from fraud_cli.main import app

    command = typer.main.get_command(app)
    assert _is_group(command), type(command)
    return command


def resolve_fraud_command(tokens: list[str]) -> tuple[Any, list[str]]:
    """Walk ``fraud <group> <command> ...`` tokens down the CLI.

    Returns:
        The leaf command and the remaining tokens (its options and arguments).

    Raises:
        LookupError: Naming the first token that is not a sub-command.
    """
    assert tokens and tokens[0] == "fraud", tokens
    command = cli_root()
    rest = tokens[1:]
    while _is_group(command):
        if not rest:
            raise LookupError(f"`{' '.join(tokens)}` stops at a group")
        sub = command.get_command(command.context_class(command), rest[0])
        if sub is None:
            raise LookupError(f"`{' '.join(tokens)}`: no sub-command {rest[0]!r}")
        command, rest = sub, rest[1:]
    return command, rest


def unknown_options(command: Any, args: list[str]) -> list[str]:
    """Options in ``args`` that ``command`` does not declare."""
    declared = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    declared.add("--help")
    return [
        arg.split("=", 1)[0]
        for arg in args
        if arg.startswith("--") and arg.split("=", 1)[0] not in declared
    ]


def fraud_invocations(text: str) -> list[list[str]]:
    """Every ``fraud ...`` command line in a shell script, Makefile recipe or DVC cmd.

    ``$(FRAUD)``/``$(BIN)/fraud``/``.venv/bin/fraud`` count as ``fraud``; a command ends at a
    shell operator (``&&``, ``||``, ``|``, ``;``, ``>``, ``&``) or at the end of the line.
    """
    found: list[list[str]] = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line.startswith(("#", "step ", "echo ", "printf ", "log ")):
            continue  # prose that mentions a command, not a command
        line = re.sub(r"(\$\(FRAUD\)|\$\(BIN\)/fraud|\S*/bin/fraud)(?=\s)", "fraud", line)
        for match in re.finditer(r"(?:^|[\s;&|(=])fraud\s+([a-z].*)", line):
            segment = re.split(r"\s*(?:&&|\|\||[|;&>)])\s*", match.group(1))[0]
            try:
                words = shlex.split(segment)
            except ValueError:
                words = segment.split()
            words = [w for w in words if not w.startswith("$") and not w.startswith('"$')]
            if words:
                found.append(["fraud", *words])
    return found
