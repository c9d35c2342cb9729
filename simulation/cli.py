"""``fraud monitor simulate``: simulated traffic through the live API, and the drift check on it.

Sends realistic traffic (the generating process continued after the data, see
:mod:`simulation.traffic`) through the live API, shifted or not, runs the same drift check as
``fraud monitor drift`` on exactly the rows it sent, then judges each window against what its
shift is meant to move (:data:`simulation.verdict.EXPECTED_DRIFT`): it exits 0 when the control
window (if sent) shows no dataset drift and the shifted window's expected features (and
prediction) are flagged while the untouched ones stay below the dataset threshold, 1 when not,
2 on errors.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fraud_platform.console import fail, warn
from fraud_platform.settings import ParamsError, get_settings, load_params
from monitoring.check import (
    EXIT_DRIFT,
    EXIT_NO_DRIFT,
    CheckOutcome,
    DriftReportsOption,
    MlflowOption,
    MonitorInputError,
    ReferenceOption,
    read_reference,
    run_check,
)

if TYPE_CHECKING:
    import pandas as pd

    from fraud_platform.settings import MonitorParams, Settings
    from simulation.verdict import WindowVerdict

app = typer.Typer(no_args_is_help=True)

DEFAULT_API_URL = "http://127.0.0.1:8000"


def _http_client(api_url: str) -> Any:
    """The HTTP client for the API (a seam for tests)."""
    import httpx

    return httpx.Client(base_url=api_url, timeout=30.0)


@app.command()
def simulate(
    api_url: Annotated[str, typer.Option(help="Base URL of the scoring API.")] = DEFAULT_API_URL,
    api_key: Annotated[
        str | None,
        typer.Option(help="X-API-Key; the first of API_KEYS by default.", envvar="FRAUD_API_KEY"),
    ] = None,
    rows: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="About this many transactions per window; one whole day of traffic by default "
            "(1000 for imported data).",
        ),
    ] = None,
    shift: Annotated[
        str, typer.Option(help="amount (x5) | night (00-06 UTC) | burst (card testing) | none.")
    ] = "amount",
    control: Annotated[
        bool,
        typer.Option("--control/--no-control", help="Send and check an unshifted window first."),
    ] = False,
    transactions: Annotated[
        Path | None,
        typer.Option(help="Transactions to continue; data/raw/transactions.parquet."),
    ] = None,
    reference: ReferenceOption = None,
    seed: Annotated[int | None, typer.Option(help="Random seed; params.yaml seed.")] = None,
    wait: Annotated[
        float,
        typer.Option(
            min=0,
            help="Seconds to wait for the scored rows in the prediction log (the API writes "
            "each row before it answers; this covers an API logging somewhere else).",
        ),
    ] = 30.0,
    out: DriftReportsOption = None,
    mlflow: MlflowOption = True,
) -> None:
    """Send shifted (and optionally control) traffic through the API and check the drift check.

    Exit 0 when every window behaved as its shift says (control: no dataset drift; shifted:
    the features it moves flagged, the untouched ones not), 1 when not, 2 on errors.
    """
    import pandas as pd

    from simulation.traffic import (
        SHIFTS,
        SimulationError,
        drop_fraud_events,
        generated_period,
        utc_run_tag,
    )
    from simulation.verdict import judge_window

    settings = get_settings()
    paths = settings.paths
    if shift not in SHIFTS:
        raise fail(f"--shift: unknown shift {shift!r}; choose one of {', '.join(SHIFTS)}")
    transactions = transactions or paths.raw_table("transactions")
    reference = reference or paths.models_dir / "reference_sample.parquet"
    windows = (["none"] if control and shift != "none" else []) + [shift]
    verdicts: list[WindowVerdict] = []
    try:
        try:
            params = load_params()
        except ParamsError as exc:
            raise MonitorInputError(str(exc)) from exc
        ref_frame = read_reference(reference)  # before any traffic is sent
        if not transactions.is_file():
            raise MonitorInputError(f"transactions not found: {transactions}")
        base = pd.read_parquet(transactions)
        customers = transactions.with_name("customers.parquet")
        n_customers = (
            len(pd.read_parquet(customers, columns=["customer_id"]))
            if customers.is_file()
            else None
        )
        period_days = generated_period(base, params.generate, params.seed, n_customers=n_customers)
        labels = transactions.with_name("labels.parquet")
        if period_days is not None and labels.is_file():
            base = drop_fraud_events(base, pd.read_parquet(labels))
        if period_days is None:
            warn(
                f"{transactions} is not what `fraud data generate` makes with params.yaml "
                "(imported, or other parameters): replaying its last day moved forward instead; "
                "the replayed customers' velocity features are distorted by the move, so even "
                "the control window may drift"
            )
        else:
            typer.echo(
                f"continuing the generated {period_days}-day period after the data "
                f"(same customers, merchants and process; seed {params.seed})"
            )
        run = _Run(
            settings=settings,
            monitor=params.monitor,
            client=_http_client(api_url),
            base=base,
            reference=ref_frame,
            reference_path=reference,
            period_days=period_days,
            rows=rows,
            seed=params.seed if seed is None else seed,
            run_tag=utc_run_tag(),
            api_url=api_url,
            api_key=api_key or next(iter(settings.api_key_list), None),
            wait=wait,
            out=out or paths.reports_dir / "drift",
            log_mlflow=mlflow,
        )
        previous_end = None
        try:
            for window_shift in windows:
                outcome, previous_end = _simulate_one(run, window_shift, previous_end)
                verdicts.append(judge_window(window_shift, outcome.result))
        finally:
            run.client.close()
    except (MonitorInputError, SimulationError) as exc:
        raise fail(str(exc)) from exc
    print_verdict(verdicts)
    raise typer.Exit(EXIT_NO_DRIFT if all(v.passed for v in verdicts) else EXIT_DRIFT)


def print_verdict(verdicts: list[WindowVerdict]) -> None:
    """Print, per feature, what each window's shift expected and what the check flagged."""
    from rich.console import Console
    from rich.table import Table

    from fraud_platform.contracts import PROBABILITY
    from simulation.verdict import MAY_MOVE, MOVES

    if not verdicts:
        return
    console = Console(width=130)
    table = Table(title="Simulation: expected vs flagged (p < ks_p_value)")
    table.add_column("feature", no_wrap=True)
    for verdict in verdicts:
        table.add_column(f"{verdict.shift}: expected", justify="center")
        table.add_column(f"{verdict.shift}: p-value", justify="right")
        table.add_column(f"{verdict.shift}: flagged / verdict")
    styles = {MOVES: "bold", MAY_MOVE: "dim", None: ""}
    by_window = [{c.column: c for c in verdict.columns} for verdict in verdicts]
    names = list(dict.fromkeys(name for window in by_window for name in window))
    for name in names:
        cells = [f"{name} (prediction)" if name == PROBABILITY else name]
        for window in by_window:
            item = window.get(name)
            if item is None:
                cells += ["", "", ""]
                continue
            expected = item.expected or "-"
            status = item.status if item.ok else f"[bold red]{item.status}[/]"
            style = styles[item.expected]
            cells += [
                f"[{style}]{expected}[/]" if style else expected,
                f"{item.p_value:.3g}",
                ("DRIFT" if item.flagged else "ok") + f" / {status}",
            ]
        table.add_row(*cells)
    console.print(table)
    for verdict in verdicts:
        label = "[green]PASS[/]" if verdict.passed else "[bold red]FAIL[/]"
        dataset = "dataset drift" if verdict.dataset_drift else "no dataset drift"
        console.print(
            f"{label} {verdict.shift!r} window: {dataset} (share {verdict.share_drifted:.2f}, "
            f"threshold {verdict.drift_share}); {verdict.explain()}",
            soft_wrap=True,
        )
    if all(v.passed for v in verdicts):
        console.print("[green]the check tells the shift from no shift[/]")
    else:
        console.print("[bold red]the check did not behave as the shifts expect[/]")


@dataclass(frozen=True)
class _Run:
    """What every window of one ``fraud monitor simulate`` shares."""

    settings: Settings
    monitor: MonitorParams
    client: Any  # httpx.Client, or a test's TestClient
    base: pd.DataFrame  # the transactions to continue (or replay)
    reference: pd.DataFrame
    reference_path: Path
    period_days: int | None  # the generated period (continuation), None for a replay
    rows: int | None
    seed: int
    run_tag: str
    api_url: str
    api_key: str | None
    wait: float
    out: Path
    log_mlflow: bool


def _simulate_one(
    run: _Run, shift: str, previous_end: pd.Timestamp | None
) -> tuple[CheckOutcome, pd.Timestamp]:
    """Build, send and check one simulated window.

    Returns:
        The check's outcome and the window's last event time.
    """
    from rich.progress import track

    from simulation.client import latest_logged_event, send_window, wait_for_logged
    from simulation.traffic import simulated_window

    log_dir = run.settings.paths.prediction_log_dir
    # Never behind what the online state holds, even if the log has not caught up.
    after = max(
        (t for t in (latest_logged_event(log_dir), previous_end) if t is not None),
        default=None,
    )
    notes: list[str] = []
    window = simulated_window(
        run.base,
        rows=run.rows,
        shift=shift,
        after=after,
        run_tag=run.run_tag,
        seed=run.seed,
        period_days=run.period_days,
        notes=notes,
    )
    for message in notes:
        warn(message)
    typer.echo(
        f"sending {len(window)} '{shift}' transactions to {run.api_url} "
        f"({window['timestamp'].min()} .. {window['timestamp'].max()})"
    )

    def progress(items: Any) -> Any:
        return track(items, description=f"{shift:>6}")

    started = time.time()
    sent = send_window(run.client, window, api_key=run.api_key, progress=progress)
    typer.echo(
        f"{sent.ok}/{sent.sent} scored in {sent.seconds:.1f} s"
        + (f", {sent.failed} failed" if sent.failed else "")
    )
    for message in sent.errors:
        warn(f"API answered {message}")
    if not sent.ok:
        raise MonitorInputError("the API scored none of the simulated transactions")
    typer.echo(f"waiting up to {run.wait:.0f} s for the rows to reach {log_dir}")
    logged = wait_for_logged(
        log_dir, window["transaction_id"].tolist(), timeout=run.wait, sent_after=started
    )
    if logged.empty:
        raise MonitorInputError(
            f"nothing reached the prediction log at {log_dir}; is the API running with "
            f"PROJECT_ROOT={run.settings.project_root}?"
        )
    if len(logged) < sent.ok:
        warn(f"only {len(logged)} of {sent.ok} scored transactions are in the log yet")
    outcome = run_check(
        run.reference,
        logged,
        settings=run.settings,
        params=run.monitor,
        out_dir=run.out,
        sources={
            "reference": str(run.reference_path),
            "current": str(log_dir),
            "simulated_shift": shift,
            "simulated_run": run.run_tag,
            "simulated_base": "continuation" if run.period_days is not None else "replay",
            "api_url": run.api_url,
        },
        log_mlflow=run.log_mlflow,
        workspace=run.settings.paths.evidently_workspace,  # each window: one point of history
    )
    return outcome, window["timestamp"].max()
