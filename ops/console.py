"""The web consoles, locally: Prometheus with the rules, the Evidently UI, the Feast UI.

Compose runs them as services (docker-compose.yml); here each is the same program started
natively, with the repository's configuration: ``fraud ui prometheus`` runs Debian's
``prometheus`` on a copy of ``ops/prometheus/prometheus.yml`` whose targets are the local API and
ops ports (:func:`write_local_prometheus_config`: the one place that rewrites it), ``fraud ui
evidently`` runs ``evidently ui`` on the project's workspace, ``fraud ui feast`` runs Feast's
own ``feast ui`` on the project's registry. The tests start them through the same functions.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
import yaml

from fraud_platform.console import fail
from fraud_platform.settings import PROJECT_ROOT, Settings, get_settings

PROMETHEUS_DIR = PROJECT_ROOT / "ops" / "prometheus"
DASHBOARD = PROJECT_ROOT / "ops" / "grafana" / "dashboards" / "fraud-platform.json"
PROMETHEUS_PORT, EVIDENTLY_PORT, FEAST_UI_PORT = 9090, 8002, 8888

app = typer.Typer(no_args_is_help=True)


def dashboard_queries(path: Path = DASHBOARD) -> list[tuple[str, str]]:
    """``(panel title, PromQL)`` of every query of the Grafana dashboard."""
    import json

    dashboard = json.loads(path.read_text())
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]


def alerts_page(base: str) -> str:
    """The alerts page of the Prometheus at ``base``.

    Debian's package ships the classic web UI only (``/classic/alerts``; the React UI's
    ``/alerts`` answers 404 there); the compose image serves ``/alerts``, and ``/classic/...``
    redirects to it.
    """
    import httpx

    try:
        found = httpx.get(f"{base}/alerts", timeout=3).status_code == 200
    except httpx.HTTPError:
        found = False
    return f"{base}/alerts" if found else f"{base}/classic/alerts"


def write_local_prometheus_config(
    folder: Path,
    *,
    api_target: str,
    ops_target: str | None,
    interval: str | None = None,
) -> Path:
    """Write ``prometheus.yml`` (and the rules beside it) for local targets into ``folder``.

    Args:
        folder: Where the configuration goes (created).
        api_target: ``host:port`` of the scoring API.
        ops_target: ``host:port`` of the ops service; ``None`` drops that job.
        interval: Scrape and evaluation interval (e.g. ``1s`` in tests); the file's by default.

    Returns:
        The written ``prometheus.yml``.
    """
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    targets = {"fraud-api": api_target, "fraud-ops": ops_target}
    jobs = []
    for job in config["scrape_configs"]:
        target = targets[job["job_name"]]
        if target is not None:
            job["static_configs"] = [{"targets": [target]}]
            jobs.append(job)
    config["scrape_configs"] = jobs
    if interval:
        config["global"]["scrape_interval"] = config["global"]["evaluation_interval"] = interval
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROMETHEUS_DIR / "rules.yml", folder / "rules.yml")
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def prometheus_command(
    config: Path, data_dir: Path, port: int, host: str = "127.0.0.1"
) -> list[str]:
    """The ``prometheus`` command line for ``config``, its data in ``data_dir``.

    Raises:
        FileNotFoundError: When no ``prometheus`` binary is installed.
    """
    binary = shutil.which("prometheus")
    if binary is None:
        raise FileNotFoundError("no prometheus binary: apt-get install prometheus")
    return [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={data_dir}",
        f"--web.listen-address={host}:{port}",
        "--web.enable-lifecycle",
    ]


def evidently_command(workspace: Path, port: int, host: str = "127.0.0.1") -> list[str]:
    """The ``evidently ui`` command line serving ``workspace``."""
    # The installed `evidently` script's entry point, run by this interpreter.
    script = "import sys; from evidently.cli import app; sys.argv[0] = 'evidently'; app()"
    return [
        sys.executable, "-c", script,
        "ui", "--workspace", str(workspace), "--host", host, "--port", str(port),
    ]  # fmt: skip


def feast_ui_command(port: int, host: str = "127.0.0.1") -> list[str]:
    """The ``feast ui`` command line (run it in feature_repo/ with the Feast environment)."""
    from feature_engine.feast_cli import feast_command

    return feast_command("ui", "--host", host, "--port", str(port))


def _exec(
    command: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> None:
    """Become ``command`` (``exec``).

    The pid a script starts is then the server's own: killing it stops the server, not a
    wrapper that would leave the server orphaned.
    """
    import os

    typer.echo(f"$ {' '.join(command)}", err=True)
    sys.stdout.flush()
    if cwd is not None:
        os.chdir(cwd)
    os.execvpe(command[0], command, env if env is not None else dict(os.environ))


def render(url: str, screenshot: Path | None = None, budget_ms: int = 8000) -> str:
    """The DOM of ``url`` after its scripts ran, in headless Chromium; a PNG of it if asked.

    One Chromium run gives both (``--dump-dom`` and ``--screenshot`` of the same rendering);
    ``--virtual-time-budget`` lets the page's scripts fetch and render first.

    Raises:
        FileNotFoundError: When no ``chromium`` binary is installed.
        RuntimeError: When Chromium fails or writes no screenshot.
    """
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        raise FileNotFoundError("no chromium binary: apt-get install chromium")
    flags = [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--hide-scrollbars", "--window-size=1400,1000", f"--virtual-time-budget={budget_ms}",
    ]  # fmt: skip
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.unlink(missing_ok=True)
        flags.append(f"--screenshot={screenshot}")
    done = subprocess.run(
        [*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"chromium failed on {url}: {done.stderr[-2000:]}")
    if screenshot is not None and not screenshot.is_file():
        raise RuntimeError(f"chromium wrote no screenshot of {url}: {done.stderr[-2000:]}")
    return done.stdout


def wait_for(check: Callable[[], bool], timeout: float, every: float = 0.5) -> float | None:
    """Seconds until ``check()`` is true (connection errors count as false); ``None`` if never."""
    import time

    import httpx

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if check():
                return time.monotonic() - started
        except (httpx.HTTPError, OSError, ValueError, KeyError):
            pass
        time.sleep(every)
    return None


def alert_state(prometheus_url: str, alert: str) -> str:
    """``firing``, ``pending`` or ``inactive``: the alert's state in the Prometheus at the URL."""
    import httpx

    answer = httpx.get(f"{prometheus_url.rstrip('/')}/api/v1/alerts", timeout=5)
    answer.raise_for_status()
    states = {
        a["state"] for a in answer.json()["data"]["alerts"] if a["labels"]["alertname"] == alert
    }
    return "firing" if "firing" in states else "pending" if "pending" in states else "inactive"


PortOption = Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")]
HostOption = Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 in compose).")]


@app.command()
def prometheus(
    port: PortOption = PROMETHEUS_PORT,
    api: Annotated[str, typer.Option(help="host:port of the scoring API.")] = "127.0.0.1:8000",
    ops: Annotated[str, typer.Option(help="host:port of `fraud ops run`.")] = "127.0.0.1:9108",
) -> None:
    """Run Prometheus with the alert rules, scraping the local API and ops service."""
    settings = get_settings()
    folder = settings.paths.run_dir / "prometheus"
    config = write_local_prometheus_config(folder, api_target=api, ops_target=ops)
    try:
        command = prometheus_command(config, folder / "data", port)
    except FileNotFoundError as exc:
        raise fail(str(exc)) from exc
    typer.echo(f"Prometheus at http://127.0.0.1:{port} (alerts: /alerts or /classic/alerts)")
    _exec(command)


@app.command()
def evidently(port: PortOption = EVIDENTLY_PORT, host: HostOption = "127.0.0.1") -> None:
    """Run the Evidently UI on the workspace: drift and consistency history per service."""
    workspace = get_settings().paths.evidently_workspace
    workspace.mkdir(parents=True, exist_ok=True)
    typer.echo(f"Evidently UI at http://127.0.0.1:{port} (workspace {workspace})")
    _exec(evidently_command(workspace, port, host))


@app.command()
def feast(port: PortOption = FEAST_UI_PORT, host: HostOption = "127.0.0.1") -> None:
    """Run Feast's UI on the project's registry (entities, views, feature services)."""
    import os

    from fraud_platform.settings import feast_environment

    settings: Settings = get_settings()
    if not settings.paths.registry.exists():
        raise fail(f"no Feast registry at {settings.paths.registry}: run `fraud features apply`")
    typer.echo(f"Feast UI at http://127.0.0.1:{port}")
    _exec(
        feast_ui_command(port, host),
        cwd=settings.paths.feature_repo,
        env={**os.environ, **feast_environment(settings)},
    )


def _answers(url: str) -> bool:
    import httpx

    return httpx.get(url, timeout=3).status_code == 200


UrlOption = Annotated[str | None, typer.Option(help="Base URL; skipped when not given.")]


@app.command()
def screenshots(
    prometheus: UrlOption = None,
    evidently: UrlOption = None,
    feast: UrlOption = None,
    out: Annotated[Path | None, typer.Option(help="Folder; reports/screenshots.")] = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for each UI.")] = 90,
) -> None:
    """Screenshot each running console in headless Chromium (PNG files under reports/screenshots).

    Checks that each page shows the project: the Evidently project of the feature service,
    the Feast project, the Prometheus alert rules. Exit 1 when a page does not.
    """
    from feature_repo.services import FEATURE_SERVICE_NAME

    folder = out or get_settings().paths.reports_dir / "screenshots"
    pages: list[tuple[str, str, str, str]] = []  # name, wait URL, page URL, text it must show
    if prometheus:
        base = prometheus.rstrip("/")
        pages.append(("prometheus-alerts", f"{base}/-/ready", alerts_page(base), "FraudRedisDown"))
    if evidently:
        base = evidently.rstrip("/")
        pages.append(("evidently-projects", f"{base}/api/projects", base, FEATURE_SERVICE_NAME))
    if feast:
        base = feast.rstrip("/")
        pages.append(("feast-ui", base, f"{base}/p/fraud_platform", "fraud_platform"))
    if not pages:
        raise fail("give at least one of --prometheus, --evidently, --feast")
    missing = []
    for name, ready, url, text in pages:
        if wait_for(lambda ready=ready: _answers(ready), timeout) is None:  # type: ignore[misc]
            missing.append(f"{name}: {ready} did not answer within {timeout:.0f} s")
            continue
        path = folder / f"{name}.png"
        try:
            dom = render(url, path, budget_ms=12000)
        except (FileNotFoundError, RuntimeError) as exc:
            raise fail(str(exc)) from exc
        shown = text in dom
        typer.echo(f"  {name:<20} {path}  ({url}{'' if shown else f'; {text!r} NOT shown'})")
        if not shown:
            missing.append(f"{name}: {url} does not show {text!r}")
    for problem in missing:
        typer.echo(f"warning: {problem}", err=True)
    raise typer.Exit(1 if missing else 0)


@app.command("wait-alert")
def wait_alert(
    alert: Annotated[str, typer.Argument(help="Alert name, e.g. FraudRedisDown.")],
    prometheus: Annotated[str, typer.Option(help="Prometheus base URL.")],
    state: Annotated[str, typer.Option(help="firing, or inactive (resolved).")] = "firing",
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait at most.")] = 120,
) -> None:
    """Wait until an alert is firing (or inactive again); print how long it took. Exit 1: never."""
    if state not in {"firing", "inactive"}:
        raise fail(f"--state: firing or inactive, not {state!r}")
    seconds = wait_for(lambda: alert_state(prometheus, alert) == state, timeout)
    if seconds is None:
        typer.echo(f"{alert} not {state} within {timeout:.0f} s", err=True)
        raise typer.Exit(1)
    typer.echo(f"{alert} {state} after {seconds:.1f} s")
