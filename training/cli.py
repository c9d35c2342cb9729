"""``fraud train``: train, cross-validate and register the model; evaluate a registered one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from fraud_platform.console import fail

app = typer.Typer(no_args_is_help=True)


def _progress(message: str) -> None:
    typer.echo(message)


@app.command()
def run(
    force_promote: Annotated[
        bool,
        typer.Option(
            "--force-promote",
            help="Move the alias (MODEL_ALIAS) to the new version even if the champion is better.",
        ),
    ] = False,
) -> None:
    """Train on labeled transactions with Feast features; log to MLflow; register the model."""
    from fraud_platform.settings import ParamsError, get_settings, load_params
    from training.dataset import TrainingError
    from training.run import train_and_register

    settings = get_settings()
    try:
        params = load_params()
        train_and_register(settings, params, force_promote=force_promote, progress=_progress)
    except (ParamsError, TrainingError, FileNotFoundError) as exc:
        raise fail(str(exc)) from exc


@app.command("evaluate")
def evaluate_command(
    alias: Annotated[
        str | None,
        typer.Option(help="Registry alias of the model to evaluate; MODEL_ALIAS by default."),
    ] = None,
    output: Annotated[
        Path | None, typer.Option(help="Also write the metrics to this JSON file.")
    ] = None,
) -> None:
    """Score a registered model on the current data's time-ordered holdout at its threshold."""
    from fraud_platform.settings import ParamsError, get_settings, load_params
    from training.dataset import TrainingError
    from training.registry import evaluate_registered

    settings = get_settings()
    try:
        params = load_params()
        result = evaluate_registered(settings, params, alias=alias, progress=_progress)
    except (ParamsError, TrainingError, FileNotFoundError) as exc:
        raise fail(str(exc)) from exc
    text = json.dumps(result, indent=2)
    typer.echo(text)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text + "\n")
