"""MkDocs hook: fill the generated parts of the pages from the code at build time.

A page asks for a generated part with a line of its own, ``<!-- generated: NAME -->``; the hook
replaces the line with the part's Markdown before MkDocs renders the page. The parts:

* ``velocity-table``: the declared velocity features (the declaration table, one row each);
* ``derived-table``: the declared derived (non-velocity) features, one row each;
* ``settings``: every field of the environment settings object;
* ``params``: every section and key of ``params.yaml``;
* ``openapi``: the API reference, from the app's OpenAPI schema;
* ``metrics``: the API's Prometheus metrics, from the object that declares them;
* ``changelog``: ``CHANGELOG.md`` from the repository root.

An unknown name, or a part that cannot be rendered (a setting without a description, say),
fails the build. Nothing is fetched from the network: every source is this checkout.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import project_sources  # the one place that imports the project's modules
import render_config
import render_openapi
from mkdocs.exceptions import PluginError

MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.MULTILINE)


def _changelog() -> str:
    text = (project_sources.PROJECT_ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    return re.sub(r"\A# .*\n+", "", text)  # the page has its own title


GENERATORS: dict[str, Callable[[], str]] = {
    "velocity-table": project_sources.velocity_table,
    "derived-table": project_sources.derived_table,
    "settings": lambda: render_config.settings_markdown(
        project_sources.Settings, project_sources.PROJECT_ROOT
    ),
    "params": lambda: render_config.params_markdown(
        project_sources.Params, project_sources.PROJECT_ROOT / "params.yaml"
    ),
    "openapi": lambda: render_openapi.openapi_markdown(project_sources.openapi_schema()),
    "metrics": lambda: render_openapi.metrics_markdown(project_sources.api_metrics()),
    "changelog": _changelog,
}


def render(markdown: str, where: str = "page") -> str:
    """Replace every generated-part marker of a page with the part.

    Args:
        markdown: The page's source.
        where: The page's path, for the error message.

    Returns:
        The page with every marker line replaced.

    Raises:
        PluginError: If a marker names no known part, or a part fails to render.
    """

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise PluginError(
                f"{where}: unknown generated part {name!r}; known: {sorted(GENERATORS)}"
            )
        try:
            return GENERATORS[name]().rstrip("\n")
        except Exception as exc:
            raise PluginError(f"{where}: generated part {name!r} failed: {exc}") from exc

    return MARKER.sub(replace, markdown)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """MkDocs event: a page's Markdown, before it is rendered to HTML."""
    return render(markdown, page.file.src_uri)
