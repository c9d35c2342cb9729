"""``fraud monitor``: drift of live traffic against the training reference.

``fraud monitor drift`` compares a window of the prediction log with
``models/reference_sample.parquet``, prints a per-feature table, writes
``reports/drift/<utc-timestamp>/`` (Evidently HTML and JSON, our ``summary.json``), logs the run
to MLflow and exits 0 (no dataset drift), 1 (dataset drift) or 2 (bad input).

``fraud monitor simulate`` sends realistic traffic (the generating process continued after the
data, see :mod:`monitoring.simulate`) through the live API, shifted or not, runs the same check
on exactly the rows it sent, then judges each window against what its shift is meant to move
(:data:`monitoring.simulate.EXPECTED_DRIFT`): it exits 0 when the control window (if sent) shows
no dataset drift and the shifted window's expected features (and prediction) are flagged while
the untouched ones stay below the dataset threshold, 1 when not, 2 on errors.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fraud_platform.settings import ParamsError, get_settings, load_params

if TYPE_CHECKING:
    import pandas as pd

    from monitoring.drift import DriftResult
    from monitoring.report import ReportFiles
    from monitoring.simulate import WindowVerdict

app = typer.Typer(no_args_is_help=True)

EXIT_NO_DRIFT, EXIT_DRIFT, EXIT_ERROR = 0, 1, 2
DEFAULT_API_URL = "http://127.0.0.1:8000"


class MonitorInputError(Exception):
    """Input the check cannot use; the message is shown as is, the exit code is 2."""


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_ERROR)


def _warn(message: str) -> None:
    typer.echo(f"warning: {message}", err=True)


# ------------------------------------------------------------------------------------ loading


def read_reference(path: Path) -> pd.DataFrame:
    """The training reference sample.

    Raises:
        MonitorInputError: If the file is missing or unreadable.
    """
    import pandas as pd

    if not path.is_file():
        raise MonitorInputError(f"reference sample not found: {path} (run the training step)")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise MonitorInputError(f"cannot read reference {path}: {exc}") from exc


def read_current(path: Path) -> pd.DataFrame:
    """The current data: one Parquet file, or a prediction-log folder (the API's journal).

    Raises:
        MonitorInputError: If nothing is there or a file cannot be read.
    """
    import pandas as pd

    from serving.prediction_log import read_prediction_log

    try:
        if path.is_file():
            return pd.read_parquet(path)
        if path.is_dir():
            frame = read_prediction_log(path)
            if frame.empty:
                raise MonitorInputError(f"no rows in the prediction log {path}")
            return frame
    except MonitorInputError:
        raise
    except Exception as exc:
        raise MonitorInputError(f"cannot read current data {path}: {exc}") from exc
    raise MonitorInputError(f"current data not found: {path}")


def _parse_since(since: str | None) -> datetime | None:
    if since is None:
        return None
    try:
        moment = datetime.fromisoformat(since.replace("Z", "+00:00"))
    except ValueError as exc:
        raise MonitorInputError(f"--since: not an ISO time: {since!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# ------------------------------------------------------------------------------------ checking


@dataclass(frozen=True)
class CheckOutcome:
    """One finished drift check.

    Attributes:
        result: The statistics and the verdict.
        files: The written reports.
        run_id: The MLflow run, when logged.
    """

    result: DriftResult
    files: ReportFiles
    run_id: str | None

    @property
    def exit_code(self) -> int:
        """1 when the dataset drifted, else 0."""
        return EXIT_DRIFT if self.result.dataset_drift else EXIT_NO_DRIFT


def run_check(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    out_dir: Path,
    sources: dict[str, Any],
    log_mlflow: bool = True,
    threshold: float | None = None,
) -> CheckOutcome:
    """Compute drift, print the table, write the reports and log them to MLflow.

    Args:
        reference: Reference sample.
        current: The current window.
        out_dir: Parent of the timestamped report folder.
        sources: Where the data came from, stored with the results.
        log_mlflow: Log the run to MLflow (tracking URI from the settings).
        threshold: Decision threshold for precision/recall; the window's own by default.

    Returns:
        The outcome.

    Raises:
        MonitorInputError: For bad params or frames that cannot be compared.
    """
    from monitoring.drift import DriftInputError, compute_drift, feature_kinds, model_features
    from monitoring.report import log_to_mlflow, write_report

    try:
        params = load_params().monitor
    except ParamsError as exc:
        raise MonitorInputError(str(exc)) from exc
    try:
        result = compute_drift(
            reference,
            current,
            ks_p_value=params.ks_p_value,
            drift_share=params.drift_share,
            min_rows=params.min_rows,
            threshold=threshold,
        )
    except DriftInputError as exc:
        raise MonitorInputError(str(exc)) from exc
    for message in result.warnings:
        _warn(message)
    files = write_report(
        result, reference, current, feature_kinds(model_features()), out_dir, sources=sources
    )
    for message in files.warnings:
        _warn(message)
    print_summary(result, files)
    run_id = None
    if log_mlflow:
        settings = get_settings()
        try:
            run_id = log_to_mlflow(
                result,
                files,
                tracking_uri=settings.tracking_uri,
                artifact_location=(settings.project_root / "mlruns").resolve().as_uri(),
                params=sources,
            )
            typer.echo(f"MLflow run {run_id} ({settings.tracking_uri})")
        except Exception as exc:  # the reports are on disk; a tracking outage is not drift
            _warn(f"could not log to MLflow at {settings.tracking_uri}: {exc}")
    return CheckOutcome(result=result, files=files, run_id=run_id)


def print_summary(result: DriftResult, files: ReportFiles) -> None:
    """Print the per-feature table and the verdicts."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=110)
    table = Table(
        title=f"Drift: {result.current_rows:,} current vs {result.reference_rows:,} reference rows"
    )
    table.add_column("feature", no_wrap=True)
    table.add_column("test")
    table.add_column("statistic", justify="right")
    table.add_column("p-value", justify="right")
    table.add_column("drift", justify="center")
    rows = list(result.features)
    if result.prediction is not None:
        rows.append(result.prediction)
    for item in rows:
        name = item.column if item in result.features else f"{item.column} (prediction)"
        table.add_row(
            name,
            item.test,
            f"{item.statistic:.4f}",
            f"{item.p_value:.3g}",
            "[bold red]DRIFT[/]" if item.drifted else "ok",
        )
    console.print(table)
    verdict = "[bold red]DATASET DRIFT[/]" if result.dataset_drift else "[green]no dataset drift[/]"
    console.print(
        f"{verdict}: {len(result.drifted_features)}/{len(result.features)} features drifted "
        f"(share {result.share_drifted:.2f}, threshold {result.drift_share}; "
        f"p < {result.ks_p_value})"
    )
    if result.prediction is not None:
        state = "drifted" if result.prediction.drifted else "stable"
        console.print(f"prediction drift: {state} (KS p = {result.prediction.p_value:.3g})")
    perf = result.performance
    if perf is not None:

        def fmt(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.3f}"

        console.print(
            f"window performance on {perf.labelled_rows} labelled rows ({perf.positives} fraud): "
            f"PR-AUC {fmt(perf.pr_auc)}, precision {fmt(perf.precision)}, "
            f"recall {fmt(perf.recall)} at threshold {perf.threshold:.3f}"
        )
    console.print(f"report: {files.folder}", soft_wrap=True)


# ------------------------------------------------------------------------------------ commands


@app.command()
def drift(
    reference: Annotated[
        Path | None,
        typer.Option(help="Training reference sample; models/reference_sample.parquet."),
    ] = None,
    current: Annotated[
        Path | None,
        typer.Option(help="Parquet file or prediction-log folder; data/prediction_log."),
    ] = None,
    last: Annotated[
        int | None,
        typer.Option("--last", "--window", help="Only the latest N rows (by event time)."),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only rows with event time at or after this ISO time (UTC).")
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(help="Labels to join for PR-AUC/precision/recall; data/raw/labels.parquet."),
    ] = None,
    use_labels: Annotated[
        bool, typer.Option("--use-labels/--no-labels", help="Join known labels.")
    ] = True,
    threshold: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Decision threshold for precision/recall; the logged one by default.",
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Parent folder of the report folders; reports/drift.")
    ] = None,
    mlflow: Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="Log to MLflow.")] = True,
) -> None:
    """Compare live traffic with the training reference; exit 0 stable, 1 drift, 2 error."""
    paths = get_settings().paths
    reference = reference or paths.models_dir / "reference_sample.parquet"
    current = current or paths.prediction_log_dir
    out = out or paths.reports_dir / "drift"
    try:
        from monitoring.drift import DriftInputError, join_labels, select_window

        ref_frame = read_reference(reference)
        cur_frame = read_current(current)
        try:
            cur_frame = select_window(cur_frame, last=last, since=_parse_since(since))
        except DriftInputError as exc:
            raise MonitorInputError(str(exc)) from exc
        if cur_frame.empty:
            raise MonitorInputError(f"current: no rows in the selected window of {current}")
        labels_path = labels or paths.raw_table("labels")
        joined = False
        if use_labels and labels_path.is_file() and "transaction_id" in cur_frame:
            import pandas as pd

            try:
                label_frame = pd.read_parquet(labels_path)
            except Exception as exc:
                raise MonitorInputError(f"cannot read labels {labels_path}: {exc}") from exc
            # Only labels already known now: a chargeback may still be on its way.
            cur_frame = join_labels(cur_frame, label_frame, as_of=datetime.now(UTC))
            joined = "is_fraud" in cur_frame
        elif labels is not None and not labels.is_file():
            raise MonitorInputError(f"labels not found: {labels}")
        sources = {
            "reference": str(reference),
            "current": str(current),
            "last": last,
            "since": since,
            "labels": str(labels_path) if joined else None,
        }
        outcome = run_check(
            ref_frame,
            cur_frame,
            out_dir=out,
            sources=sources,
            log_mlflow=mlflow,
            threshold=threshold,
        )
    except MonitorInputError as exc:
        raise _fail(str(exc)) from exc
    raise typer.Exit(outcome.exit_code)


@app.command()
def consistency(
    current: Annotated[
        Path | None,
        typer.Option(help="Prediction-log folder (or Parquet file); data/prediction_log."),
    ] = None,
    last: Annotated[
        int | None,
        typer.Option("--last", "--window", help="Only the latest N logged predictions."),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only predictions with event time at or after this time.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Parent folder of the report folders; reports/consistency.")
    ] = None,
    mlflow: Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="Log to MLflow.")] = True,
) -> None:
    """Recompute served features offline and compare; exit 0 consistent, 1 skew, 2 error.

    The logged predictions of the window are recomputed as of each transaction's own time
    through get_historical_features on the same feature service, over the raw data plus every
    transaction and label ingested online (a shadow build in a temporary root). A feature whose
    mismatch rate is above monitor.consistency_max_mismatch_rate (params.yaml) fails the check.
    """
    from monitoring.consistency import (
        compare_features,
        log_to_mlflow,
        recompute_offline,
        write_report,
    )

    settings = get_settings()
    paths = settings.paths
    current = current or paths.prediction_log_dir
    out = out or paths.reports_dir / "consistency"
    try:
        from monitoring.drift import DriftInputError, model_features, select_window

        params = load_params()
        logged = read_current(current)
        try:
            logged = select_window(logged, last=last, since=_parse_since(since))
        except DriftInputError as exc:
            raise MonitorInputError(str(exc)) from exc
        from data.schema import TRANSACTIONS  # a logged request carries a transaction's fields

        missing = [c for c in TRANSACTIONS.names if c not in logged.columns]
        if missing:
            raise MonitorInputError(
                f"{current}: logged predictions lack the request fields {missing} "
                "(logged by an older API version?)"
            )
        if logged.empty:
            raise MonitorInputError(f"no logged predictions in the selected window of {current}")
        logged = logged.drop_duplicates(["customer_id", "transaction_id"], keep="first")
        features = model_features()
        typer.echo(f"recomputing {len(logged):,} logged predictions offline ...")
        offline = recompute_offline(settings, logged, progress=typer.echo)
        logged = logged.assign(_key=logged["customer_id"] + "\x1f" + logged["transaction_id"])
        offline = offline.assign(_key=offline["customer_id"] + "\x1f" + offline["transaction_id"])
        result = compare_features(
            logged, offline, features, params.monitor.consistency_max_mismatch_rate, key="_key"
        )
    except (MonitorInputError, ParamsError, ValueError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from exc
    window = {
        "current": str(current),
        "last": str(last),
        "since": str(since),
        "from": str(logged["timestamp"].min()),
        "to": str(logged["timestamp"].max()),
    }
    result = type(result)(result.rows, result.features, result.max_mismatch_rate, window)
    from monitoring.report import report_folder

    folder = report_folder(out)
    files = write_report(result, folder)
    typer.echo(f"{'feature':<28} {'compared':>9} {'mismatches':>10} {'rate':>8} {'unknown':>8}")
    for item in result.features:
        typer.echo(
            f"{item.feature:<28} {item.compared:>9,} {item.mismatches:>10,} "
            f"{item.mismatch_rate:>8.3%} {item.unknown:>8,}"
        )
        for example in item.examples[:2]:
            typer.echo(f"    e.g. {example}")
    verdict = "consistent" if not result.failing else f"SKEW in {', '.join(result.failing)}"
    typer.echo(
        f"{result.rows:,} predictions, {result.total_mismatches:,} mismatching values: {verdict} "
        f"(threshold {result.max_mismatch_rate:.3%}); reports in {folder}"
    )
    if mlflow:
        try:
            run_id = log_to_mlflow(
                result,
                files,
                tracking_uri=settings.tracking_uri,
                artifact_location=(settings.project_root / "mlruns").resolve().as_uri(),
            )
            typer.echo(f"MLflow run {run_id} ({settings.tracking_uri})")
        except Exception as exc:  # the reports are on disk; a tracking outage is not skew
            _warn(f"could not log to MLflow at {settings.tracking_uri}: {exc}")
    raise typer.Exit(EXIT_DRIFT if result.failing else EXIT_NO_DRIFT)


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
    reference: Annotated[
        Path | None,
        typer.Option(help="Training reference sample; models/reference_sample.parquet."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed; params.yaml seed.")] = None,
    wait: Annotated[
        float,
        typer.Option(
            min=0,
            help="Seconds to wait for the scored rows in the prediction log (the API writes "
            "each row before it answers; this covers an API logging somewhere else).",
        ),
    ] = 30.0,
    out: Annotated[
        Path | None, typer.Option(help="Parent folder of the report folders; reports/drift.")
    ] = None,
    mlflow: Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="Log to MLflow.")] = True,
) -> None:
    """Send shifted (and optionally control) traffic through the API and check the drift check.

    Exit 0 when every window behaved as its shift says (control: no dataset drift; shifted:
    the features it moves flagged, the untouched ones not), 1 when not, 2 on errors.
    """
    import pandas as pd

    from monitoring.simulate import (
        SHIFTS,
        SimulationError,
        drop_fraud_events,
        generated_period,
        utc_run_tag,
    )

    settings = get_settings()
    paths = settings.paths
    if shift not in SHIFTS:
        raise _fail(f"--shift: unknown shift {shift!r}; choose one of {', '.join(SHIFTS)}")
    transactions = transactions or paths.raw_table("transactions")
    reference = reference or paths.models_dir / "reference_sample.parquet"
    out = out or paths.reports_dir / "drift"
    api_key = api_key or next(iter(settings.api_key_list), None)
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
            _warn(
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
        seed = params.seed if seed is None else seed
        run_tag = utc_run_tag()
        client = _http_client(api_url)
        previous_end = None
        try:
            for window_shift in windows:
                outcome, previous_end = _simulate_one(
                    client,
                    base,
                    ref_frame,
                    previous_end=previous_end,
                    period_days=period_days,
                    shift=window_shift,
                    rows=rows,
                    seed=seed,
                    run_tag=run_tag,
                    api_url=api_url,
                    api_key=api_key,
                    wait=wait,
                    out=out,
                    reference=reference,
                    log_mlflow=mlflow,
                )
                verdicts.append(_judge(window_shift, outcome.result))
        finally:
            client.close()
    except (MonitorInputError, SimulationError) as exc:
        raise _fail(str(exc)) from exc
    print_verdict(verdicts)
    raise typer.Exit(EXIT_NO_DRIFT if all(v.passed for v in verdicts) else EXIT_DRIFT)


def _judge(shift: str, result: DriftResult) -> WindowVerdict:
    from monitoring.simulate import judge_window

    return judge_window(shift, result)


def print_verdict(verdicts: list[WindowVerdict]) -> None:
    """Print, per feature, what each window's shift expected and what the check flagged."""
    from rich.console import Console
    from rich.table import Table

    from monitoring.simulate import MAY_MOVE, MOVES, PREDICTION

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
        cells = [f"{name} (prediction)" if name == PREDICTION else name]
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


def _simulate_one(
    client: Any,
    base: pd.DataFrame,
    ref_frame: pd.DataFrame,
    *,
    previous_end: pd.Timestamp | None,
    period_days: int | None,
    shift: str,
    rows: int | None,
    seed: int,
    run_tag: str,
    api_url: str,
    api_key: str | None,
    wait: float,
    out: Path,
    reference: Path,
    log_mlflow: bool,
) -> tuple[CheckOutcome, pd.Timestamp]:
    """Build, send and check one simulated window.

    Returns:
        The check's outcome and the window's last event time.
    """
    from rich.progress import track

    from monitoring.simulate import (
        latest_logged_event,
        send_window,
        simulated_window,
        wait_for_logged,
    )

    settings = get_settings()
    log_dir = settings.paths.prediction_log_dir
    # Never behind what the online state holds, even if the log has not caught up.
    after = max(
        (t for t in (latest_logged_event(log_dir), previous_end) if t is not None),
        default=None,
    )
    notes: list[str] = []
    window = simulated_window(
        base,
        rows=rows,
        shift=shift,
        after=after,
        run_tag=run_tag,
        seed=seed,
        period_days=period_days,
        notes=notes,
    )
    for message in notes:
        _warn(message)
    typer.echo(
        f"sending {len(window)} '{shift}' transactions to {api_url} "
        f"({window['timestamp'].min()} .. {window['timestamp'].max()})"
    )

    def progress(items: Any) -> Any:
        return track(items, description=f"{shift:>6}")

    started = time.time()
    sent = send_window(client, window, api_key=api_key, progress=progress)
    typer.echo(
        f"{sent.ok}/{sent.sent} scored in {sent.seconds:.1f} s"
        + (f", {sent.failed} failed" if sent.failed else "")
    )
    for message in sent.errors:
        _warn(f"API answered {message}")
    if not sent.ok:
        raise MonitorInputError("the API scored none of the simulated transactions")
    typer.echo(f"waiting up to {wait:.0f} s for the rows to reach {log_dir}")
    logged = wait_for_logged(
        log_dir, window["transaction_id"].tolist(), timeout=wait, sent_after=started
    )
    if logged.empty:
        raise MonitorInputError(
            f"nothing reached the prediction log at {log_dir}; is the API running with "
            f"PROJECT_ROOT={settings.project_root}?"
        )
    if len(logged) < sent.ok:
        _warn(f"only {len(logged)} of {sent.ok} scored transactions are in the log yet")
    outcome = run_check(
        ref_frame,
        logged,
        out_dir=out,
        sources={
            "reference": str(reference),
            "current": str(log_dir),
            "simulated_shift": shift,
            "simulated_run": run_tag,
            "simulated_base": "continuation" if period_days is not None else "replay",
            "api_url": api_url,
        },
        log_mlflow=log_mlflow,
    )
    return outcome, window["timestamp"].max()
