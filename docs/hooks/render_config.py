"""Markdown of the platform's configuration: the environment settings and ``params.yaml``.

Both come from the objects that read them (``fraud_platform.settings``): every field of
``Settings`` with its variable, type, default and the description its class docstring gives,
and every section and key of ``params.yaml`` as the ``Params`` models validate it, with the
value the shipped file sets and the file's own comment. A field without a description is an
error, so the page never lists a setting nobody explained.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import annotated_types
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

_RST_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")
_RST_LITERAL = re.compile(r"``(.+?)``")
_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w]*):(?P<rest>.*)$")


class UndocumentedError(ValueError):
    """A setting or parameter has no description anywhere the page could take one from."""


def markdown_text(text: str) -> str:
    """Docstring text as Markdown: RST roles and double backticks become code spans."""
    text = _RST_ROLE.sub(lambda m: f"`{m.group(1).rsplit('.', 1)[-1]}`", text)
    text = _RST_LITERAL.sub(r"`\1`", text)
    return " ".join(text.split()).replace("|", "\\|")


def docstring_section(cls: type, section: str = "Attributes") -> dict[str, str]:
    """The entries of a Google-style docstring section (``name: text``), by name."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    entries: dict[str, str] = {}
    inside, current = False, ""
    for line in doc.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            inside = line.strip() == f"{section}:"
            continue
        if not inside:
            continue
        match = re.match(r"^ {4}(\w+): ?(.*)$", line)
        if match:
            current = match.group(1)
            entries[current] = match.group(2)
        elif current:
            entries[current] += " " + line.strip()
    return {name: markdown_text(text) for name, text in entries.items()}


def summary(cls: type) -> str:
    """The first paragraph of a class docstring, as Markdown."""
    return markdown_text(inspect.cleandoc(cls.__doc__ or "").split("\n\n", 1)[0])


def type_text(annotation: Any) -> str:
    """A readable type: ``int``, ``one of `a`, `b```, ``list of ...``, ``path``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return "one of " + ", ".join(f"`{value}`" for value in args)
    if origin in (tuple, list) and args:
        return "list of " + type_text(args[0])
    if origin is dict:
        return "mapping"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_text(arg) for arg in args if arg is not type(None))
    if annotation is Path or (isinstance(annotation, type) and issubclass(annotation, Path)):
        return "path"
    if annotation is datetime:
        return "datetime (ISO 8601)"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation)


def constraints_text(field: FieldInfo) -> str:
    """The field's bounds and pattern, e.g. ``> 0, <= 256``."""
    parts: list[str] = []
    for item in field.metadata:
        for kind, attribute, symbol in (
            (annotated_types.Gt, "gt", ">"),
            (annotated_types.Ge, "ge", ">="),
            (annotated_types.Lt, "lt", "<"),
            (annotated_types.Le, "le", "<="),
        ):
            if isinstance(item, kind):
                bound = getattr(item, attribute)
                parts.append(
                    f"{symbol} {bound:,}" if isinstance(bound, int) else f"{symbol} {bound}"
                )
        if isinstance(item, annotated_types.MinLen) and item.min_length:
            parts.append(f"at least {item.min_length} long")
        pattern = getattr(item, "pattern", None)
        if pattern:
            parts.append(f"matches `{pattern}`")
    return ", ".join(parts)


def value_text(value: Any, project_root: Path | None = None) -> str:
    """A default or configured value as Markdown."""
    if value is PydanticUndefined:
        return "required"
    if value == "":
        return "*(empty)*"
    if project_root is not None and isinstance(value, Path) and value == project_root:
        return "the checkout"
    if isinstance(value, list | tuple):
        return "`[" + ", ".join(str(item) for item in value) + "]`"
    if isinstance(value, datetime):
        return f"`{value.isoformat()}`"
    return f"`{value}`"


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def settings_markdown(settings_cls: type[BaseModel], project_root: Path) -> str:
    """One table row per field of the settings class.

    Args:
        settings_cls: ``fraud_platform.settings.Settings`` (a pydantic-settings class).
        project_root: The checkout, shown as "the checkout" where it is a default.

    Returns:
        A Markdown table: variable, type, default, description.

    Raises:
        UndocumentedError: If a field has neither a ``Field(description=...)`` nor an entry
            in the class docstring's ``Attributes``.
    """
    config = getattr(settings_cls, "model_config", {})
    prefix = str(config.get("env_prefix", ""))
    described = docstring_section(settings_cls)
    lines = [
        _row("variable", "type", "default", "description"),
        _row("---", "---", "---", "---"),
    ]
    for name, field in settings_cls.model_fields.items():
        description = markdown_text(field.description) if field.description else described.get(name)
        if not description:
            raise UndocumentedError(
                f"{settings_cls.__name__}.{name}: add it to the class docstring's Attributes"
            )
        kind = type_text(field.annotation)
        bounds = constraints_text(field)
        lines.append(
            _row(
                f"`{(prefix + name).upper()}`",
                kind + (f" ({bounds})" if bounds else ""),
                value_text(field.get_default(call_default_factory=True), project_root),
                description,
            )
        )
    return "\n".join(lines) + "\n"


class YamlComments:
    """The comments of a YAML file, by dotted key: the one on the key's line and the block above.

    PyYAML drops comments, so the file is read a second time as lines. Only block-style
    mappings (``key: value`` lines, nested by indentation) are followed, which is all
    ``params.yaml`` uses.
    """

    def __init__(self, text: str) -> None:
        """Index the comments of ``text``."""
        self.line: dict[str, str] = {}
        self.block: dict[str, str] = {}
        stack: list[tuple[int, str]] = []
        pending: list[str] = []
        seen_key = False
        for raw in text.splitlines():
            stripped = raw.strip()
            if not stripped:
                pending = []
                continue
            if stripped.startswith("#"):
                pending.append(stripped.lstrip("#").strip())
                continue
            match = _KEY_LINE.match(raw)
            if not match:
                pending = []
                continue
            indent = len(match.group("indent"))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, match.group("key")))
            path = ".".join(key for _, key in stack)
            rest = match.group("rest")
            if " #" in rest:
                self.line[path] = rest.split(" #", 1)[1].strip()
            if pending and seen_key:  # the comments above the first key are the file's header
                self.block[path] = " ".join(pending)
            pending, seen_key = [], True

    def meaning(self, path: str) -> str:
        """The block comment above the key, then its line comment, as Markdown sentences."""
        parts = [self.block.get(path, ""), self.line.get(path, "")]
        sentences = [_sentence(part) for part in parts if part]
        return markdown_text(" ".join(sentences))


def _sentence(text: str) -> str:
    """A comment as a sentence: capitalised, ending in a full stop."""
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", ")", "?", "!")) else text + "."


def _model_of(annotation: Any) -> type[BaseModel] | None:
    return (
        annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    )


def _params_sections(
    model: type[BaseModel], values: dict[str, Any], path: str
) -> Iterator[tuple[str, type[BaseModel], dict[str, Any]]]:
    """Every (dotted path, model, values) of the nested models, depth first."""
    yield path, model, values
    for name, field in model.model_fields.items():
        key = field.alias or name
        nested = _model_of(field.annotation)
        if nested is not None:
            yield from _params_sections(nested, values.get(key) or {}, f"{path}.{key}")


def params_markdown(params_cls: type[BaseModel], params_file: Path) -> str:
    """Every section and key of ``params.yaml``, validated as the models read it.

    Args:
        params_cls: ``fraud_platform.settings.Params``, the model of the whole file.
        params_file: The shipped ``params.yaml``: its values and comments.

    Returns:
        Markdown: one heading and table per section (key, type, value in the file, default
        when the key may be left out, meaning); the data profiles as the file writes them.

    Raises:
        UndocumentedError: If a key has no description in its model or comment in the file.
    """
    text = params_file.read_text(encoding="utf-8")
    values: dict[str, Any] = yaml.safe_load(text)
    params_cls.model_validate(values)  # the page shows a file the platform accepts
    comments = YamlComments(text)
    missing: list[str] = []
    out: list[str] = []
    top_level: list[str] = [
        _row("key", "type", "value", "meaning"),
        _row("---", "---", "---", "---"),
    ]
    described_top = docstring_section(params_cls)
    for name, field in params_cls.model_fields.items():
        key = field.alias or name
        if _model_of(field.annotation) is None and key != "profiles":
            meaning = described_top.get(name) or comments.meaning(key)
            if not meaning:
                missing.append(key)
            top_level.append(
                _row(f"`{key}`", type_text(field.annotation), value_text(values.get(key)), meaning)
            )
    out += ["### Top level", "", *top_level, ""]

    for name, field in params_cls.model_fields.items():
        key = field.alias or name
        model = _model_of(field.annotation)
        if model is None:
            continue
        for path, section, section_values in _params_sections(model, values.get(key) or {}, key):
            out += [f"### `{path}`", "", summary(section), ""]
            described = docstring_section(section)
            out += [
                _row("key", "type", "value", "default", "meaning"),
                _row("---", "---", "---", "---", "---"),
            ]
            for sub_name, sub in section.model_fields.items():
                sub_key = sub.alias or sub_name
                if _model_of(sub.annotation) is not None:
                    kind = f"section (`{path}.{sub_key}`, below)"
                    out.append(_row(f"`{sub_key}`", kind, "", "", ""))
                    continue
                meaning = (
                    markdown_text(sub.description)
                    if sub.description
                    else described.get(sub_name) or comments.meaning(f"{path}.{sub_key}")
                )
                if not meaning:
                    missing.append(f"{path}.{sub_key}")
                bounds = constraints_text(sub)
                default = "required" if sub.is_required() else value_text(sub.get_default())
                shown = (
                    value_text(section_values[sub_key])
                    if sub_key in section_values
                    else "(default)"
                )
                out.append(
                    _row(
                        f"`{sub_key}`",
                        type_text(sub.annotation) + (f" ({bounds})" if bounds else ""),
                        shown,
                        default,
                        meaning,
                    )
                )
            out.append("")

    if missing:
        raise UndocumentedError(
            f"{params_file.name}: give these keys a comment (or a description in their model): "
            + ", ".join(missing)
        )
    profiles = values.get("profiles") or {}
    if profiles:
        out += [
            "### `profiles`",
            "",
            markdown_text(described_top.get("profiles", "")),
            "",
            "As the shipped file declares them:",
            "",
            "```yaml",
            _yaml_block(text, "profiles"),
            "```",
            "",
        ]
    return "\n".join(out)


def _yaml_block(text: str, key: str) -> str:
    """The lines of a top-level key's block, comments included, as the file writes them."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{key}:"))
    end = start + 1
    while end < len(lines) and (not lines[end].strip() or lines[end].startswith(" ")):
        end += 1
    return "\n".join(lines[start:end]).rstrip()
