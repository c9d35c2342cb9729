"""Markdown of the API reference, from the live app's OpenAPI schema.

Every route with its summary, authentication, request body and answers (status, meaning,
schema), then every schema of ``components`` as a table of its fields. Schema names link to
their section, so a broken reference fails the strict build (MkDocs checks anchors).
"""

from __future__ import annotations

import json
import re
from typing import Any

_METHODS = ("get", "post", "put", "patch", "delete")
_RST_LITERAL = re.compile(r"``(.+?)``")


def _text(text: str | None) -> str:
    """Schema prose as one Markdown line: double backticks to code spans, pipes escaped."""
    text = _RST_LITERAL.sub(r"`\1`", text or "")
    return " ".join(text.split()).replace("|", "\\|")


def anchor(name: str) -> str:
    """The heading id Python-Markdown gives a schema's ``### Name`` heading."""
    return re.sub(r"[^a-z0-9_-]", "", name.lower())


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def type_text(schema: dict[str, Any]) -> str:
    """A readable type of a JSON schema: links for references, ``or`` for unions."""
    if "$ref" in schema:
        name = _ref_name(schema["$ref"])
        return f"[{name}](#{anchor(name)})"
    if "anyOf" in schema:
        return " or ".join(type_text(option) for option in schema["anyOf"])
    if "enum" in schema:
        return "one of " + ", ".join(f"`{value}`" for value in schema["enum"])
    kind = schema.get("type", "any")
    if kind == "array":
        return "array of " + type_text(schema.get("items", {}))
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return "object of " + type_text(schema["additionalProperties"])
    if "format" in schema:
        return f"{kind} ({schema['format']})"
    return str(kind)


def constraints_text(schema: dict[str, Any]) -> str:
    """Bounds, lengths and pattern of a schema (or of its first non-null ``anyOf`` option)."""
    options = [o for o in schema.get("anyOf", []) if o.get("type") != "null"]
    target = options[0] if len(options) == 1 else schema
    parts = []
    for key, label in (
        ("minimum", ">="),
        ("exclusiveMinimum", ">"),
        ("maximum", "<="),
        ("exclusiveMaximum", "<"),
        ("minLength", "length >="),
        ("maxLength", "length <="),
        ("minItems", "items >="),
        ("maxItems", "items <="),
    ):
        if key in target:
            parts.append(
                f"{label} {target[key]:g}"
                if isinstance(target[key], float)
                else f"{label} {target[key]}"
            )
    if "pattern" in target:
        parts.append(f"pattern `{target['pattern']}`")
    return ", ".join(parts)


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def _fields_table(schema: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", []))
    lines = [
        _row("field", "type", "required", "default", "description"),
        _row("---", "---", "---", "---", "---"),
    ]
    for name, prop in schema.get("properties", {}).items():
        description = _text(prop.get("description"))
        bounds = constraints_text(prop)
        if bounds:
            description = f"{description} ({bounds})" if description else bounds
        if "$ref" in prop and not description:
            description = "see the schema"
        default = f"`{json.dumps(prop['default'])}`" if "default" in prop else ""
        lines.append(
            _row(
                f"`{name}`",
                type_text(prop),
                "yes" if name in required else "",
                default,
                description,
            )
        )
    return lines


def _body_schema(content: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    media, body = next(iter(content.items()))
    return media, body.get("schema", {})


def openapi_markdown(schema: dict[str, Any]) -> str:
    """The whole reference: routes in the schema's order, then the schemas alphabetically.

    Args:
        schema: An OpenAPI 3 document (``FastAPI.openapi()``).

    Returns:
        Markdown with one ``##`` section per route and one ``###`` section per schema.
    """
    info = schema.get("info", {})
    schemes = schema.get("components", {}).get("securitySchemes", {})
    out = [
        f"Generated from the OpenAPI {schema.get('openapi', '')} schema of "
        f"**{info.get('title', 'the API')}** version {info.get('version', '')}: "
        f"{_text(info.get('summary') or info.get('description'))} The running API serves the "
        "same document at `/openapi.json` and an interactive view at `/docs`.",
        "",
    ]
    routes = [
        (path, method, operation)
        for path, item in schema.get("paths", {}).items()
        for method, operation in item.items()
        if method in _METHODS
    ]
    out += [_row("route", "summary"), _row("---", "---")]
    for path, method, operation in routes:
        heading = f"{method.upper()} {path}"
        out.append(
            _row(
                f"[`{heading}`](#{anchor(heading.replace(' ', '-'))})",
                _text(operation.get("description")),
            )
        )
    out.append("")

    for path, method, operation in routes:
        out += [f"## {method.upper()} {path}", "", _text(operation.get("description")), ""]
        for requirement in operation.get("security", []):
            for name in requirement:
                scheme = schemes.get(name, {})
                out += [
                    f"Authentication: header `{scheme.get('name', name)}`, required when the "
                    "server has `API_KEYS` set.",
                    "",
                ]
        if "requestBody" in operation:
            media, body = _body_schema(operation["requestBody"]["content"])
            out += [f"Request body (`{media}`): {type_text(body)}", ""]
        out += [_row("status", "meaning", "body"), _row("---", "---", "---")]
        for status, response in operation.get("responses", {}).items():
            content = response.get("content") or {}
            if content:
                media, body = _body_schema(content)
                shown = type_text(body) if body and body != {} else f"`{media}`"
                if "$ref" not in body and body.get("type") in (None, "string"):
                    shown = f"`{media}`"
            else:
                shown = ""
            out.append(_row(f"`{status}`", _text(response.get("description")), shown))
        out.append("")

    out += ["## Schemas", ""]
    for name, component in sorted(schema.get("components", {}).get("schemas", {}).items()):
        out += [f"### {name}", "", _text(component.get("description")), ""]
        if component.get("properties"):
            out += _fields_table(component)
            if component.get("additionalProperties") is False:
                out += ["", "No other fields are accepted (422 names the unknown one)."]
        else:
            out.append(f"Type: {type_text(component)}")
        out.append("")
    return "\n".join(out)


def metrics_markdown(metrics: list[tuple[str, str, str]]) -> str:
    """The API's Prometheus metrics as a table: name, type, meaning."""
    lines = [_row("metric", "type", "meaning"), _row("---", "---", "---")]
    lines += [_row(f"`{name}`", kind, _text(doc)) for name, kind, doc in metrics]
    return "\n".join(lines) + "\n"
