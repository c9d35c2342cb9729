"""Training phase 3, the registry decision: register the challenger, move the alias if it wins.

The model is registered under ``Settings.model_name`` and promoted by moving
``Settings.model_alias`` (``MODEL_NAME``/``MODEL_ALIAS``: the same settings the API loads
``models:/<name>@<alias>`` with); models are addressed by alias, never by stage.

Champion/challenger: every model a run trains (``train.models``) is registered; the one with
the best holdout PR-AUC is the run's challenger, the others are tagged ``not_selected`` and stay
registered beside it. The promotion gate moves the alias to the challenger only when

1. its holdout PR-AUC is strictly higher than that of the current version under the alias
   (champion) scored on the *same* holdout rows now,
2. its holdout precision at its operating point is at least the champion's at the champion's
   own threshold, and
3. the registered artifact, loaded back from the registry, passes every behavioural case
   (:mod:`training.behaviour`: the reference example scores above the median legitimate
   transaction, a card-testing burst and ten times the amount at night score above the card's
   usual purchase) that the champion passes: no behavioural regression. A case the champion
   fails too is reported, not required: data with no example of a pattern (real-shaped data
   has no card-testing bursts) cannot teach it, and refusing every model for it would leave
   the old one, or none, serving;

with no champion nothing is compared and the first model is promoted, its behavioural cases
reported (a failing one printed as a warning); ``--force-promote`` moves the alias whatever the
gate says.
Each check's verdict and figures are logged on the run. The decision
is tagged on each new version with its threshold, features and family
(:class:`fraud_platform.contracts.ModelTags`, what the API needs to serve it) and logged on
the run (:func:`training.run_log.log_decision`).

:func:`evaluate_registered` scores any registered version on the current data's holdout at its
own threshold (``fraud train evaluate``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from feature_repo.services import FEATURE_SERVICE_NAME
from fraud_platform.contracts import AMOUNT, EVENT_TIMESTAMP, LABEL, ModelTags, ModelTagsError
from fraud_platform.tracking import mlflow_client
from training.dataset import Progress, TrainingError, TrainingSet, load_training_set, to_stdout
from training.evaluation import Evaluation, ModelResult, holdout_mask, score_metrics
from training.model import model_matrix

if TYPE_CHECKING:
    from collections.abc import Mapping

    import pandas as pd
    from mlflow.tracking import MlflowClient

    from fraud_platform.settings import Params, Settings


@dataclass(frozen=True)
class GateCheck:
    """One check of the promotion gate.

    Attributes:
        name: ``holdout_pr_auc``, ``holdout_precision`` (at each model's operating point) or
            ``behaviour_<case>`` (:mod:`training.behaviour`).
        passed: Whether the challenger passed it.
        challenger: The challenger's figure.
        bar: What it had to beat (the champion's figure, the threshold or the usual
            purchase's probability); ``None`` when there was nothing to compare with.
        detail: The check in words.
        required: Whether a failure blocks the promotion (a behavioural case the champion
            fails too, or any with no champion, is only reported).
    """

    name: str
    passed: bool
    challenger: float
    bar: float | None
    detail: str
    required: bool = True


@dataclass(frozen=True)
class Champion:
    """The version under the alias, scored on this run's holdout.

    Attributes:
        version: Its version, ``None`` when the alias points nowhere.
        pr_auc: Its holdout PR-AUC, ``None`` when it cannot be scored.
        precision: Its holdout precision at its own registered threshold.
        feature_service: The feature service it serves with (its behavioural cases are
            computed with it), ``None`` when its tags cannot be read.
    """

    version: str | None
    pr_auc: float | None = None
    precision: float | None = None
    feature_service: str | None = None


@dataclass(frozen=True)
class Decision:
    """What the registry decided for a run's challenger.

    Attributes:
        version: The version registered by this run (the challenger).
        promoted: Whether the alias now points at it.
        decision: ``no_champion``, ``forced``, ``challenger_better``, ``champion_kept``,
            ``behaviour_failed`` or ``champion_unscorable``.
        champion_version: The version under the alias before this run, if any.
        champion_pr_auc: Its PR-AUC on this run's holdout, if it could be scored.
        others: Family -> version of the run's other models (registered, ``not_selected``).
        checks: The promotion gate's checks (:class:`GateCheck`), in order.
        champion_precision: The champion's holdout precision at its threshold, if scored.
    """

    version: str
    promoted: bool
    decision: str
    champion_version: str | None
    champion_pr_auc: float | None
    others: dict[str, str] = field(default_factory=dict)
    checks: tuple[GateCheck, ...] = ()
    champion_precision: float | None = None

    @property
    def gate_passed(self) -> bool:
        """Whether every required check of the gate passed (a forced promotion may skip one)."""
        return all(check.passed for check in self.checks if check.required)


def score_champion(
    client: MlflowClient, settings: Settings, holdout: pd.DataFrame, progress: Progress
) -> Champion:
    """The current model under the alias, scored on this holdout: PR-AUC and its precision.

    The precision is at the champion's own registered threshold (its operating point), so
    the comparison is of the two models as each would serve.

    Returns:
        ``Champion(None)`` when the alias points nowhere; no scores when the champion cannot
        be scored (bad tags, its features not in the frame, or it does not load).
    """
    import mlflow.sklearn
    from mlflow.exceptions import MlflowException
    from sklearn.metrics import average_precision_score, precision_score

    try:
        champion = client.get_model_version_by_alias(settings.model_name, settings.model_alias)
    except MlflowException:
        return Champion(None)
    version = str(champion.version)
    try:
        tags = ModelTags.from_tags(champion.tags)
    except ModelTagsError as exc:
        progress(f"champion v{version} cannot be scored: {exc}")
        return Champion(version)
    features = list(tags.features)
    missing = [name for name in features if name not in holdout.columns]
    if missing:
        progress(f"champion v{version} cannot be scored: missing features {missing}")
        return Champion(version, feature_service=tags.feature_service)
    try:
        model = mlflow.sklearn.load_model(settings.model_uri)
    except (MlflowException, OSError) as exc:
        progress(f"champion v{version} does not load: {exc}")
        return Champion(version, feature_service=tags.feature_service)
    scores = model.predict_proba(model_matrix(holdout, features))[:, 1]
    y_true = holdout[LABEL].to_numpy(dtype=int)
    flagged = (scores >= tags.threshold).astype(int)
    return Champion(
        version,
        float(average_precision_score(y_true, scores)),
        float(precision_score(y_true, flagged, zero_division=0)),
        tags.feature_service,
    )


def comparison_checks(challenger: ModelResult, champion: Champion) -> list[GateCheck]:
    """The challenger against the champion on this holdout: PR-AUC, then precision.

    PR-AUC must be strictly higher (equal is not better: the alias stays). Precision at the
    operating point (each model at its own threshold) must be at least the champion's: a
    better ranking that makes the review queue noisier is not promoted.

    Returns:
        The two checks; none without a champion, and failing ones (bar ``None``) when the
        champion cannot be scored.
    """
    if champion.version is None:
        return []
    pr_auc, precision = challenger.holdout["pr_auc"], challenger.holdout["precision"]
    if champion.pr_auc is None or champion.precision is None:
        return [
            GateCheck(
                "holdout_pr_auc",
                False,
                pr_auc,
                None,
                f"champion v{champion.version} cannot be scored on this holdout",
            )
        ]
    return [
        GateCheck(
            "holdout_pr_auc",
            pr_auc > champion.pr_auc,
            pr_auc,
            champion.pr_auc,
            f"holdout PR-AUC {pr_auc:.4f} > champion v{champion.version}'s {champion.pr_auc:.4f}",
        ),
        GateCheck(
            "holdout_precision",
            precision >= champion.precision,
            precision,
            champion.precision,
            f"holdout precision at the operating point {precision:.4f} >= champion "
            f"v{champion.version}'s {champion.precision:.4f} at its threshold",
        ),
    ]


def behaviour_checks(
    settings: Settings,
    params: Params,
    version: str,
    feature_service: str,
    holdout: pd.DataFrame,
    tables: Mapping[str, pd.DataFrame],
) -> list[GateCheck]:
    """The behavioural cases (:mod:`training.behaviour`) on the registered version.

    The model is loaded back from the registry (``models:/<name>/<version>``, the artifact the
    API would load); ``holdout``'s legitimate rows are the traffic the reference example must
    stand out from; ``tables`` are the project's raw tables, read once per run.

    Returns:
        One check per case; a single failing ``behaviour_cases`` check when the data cannot
        give the cases (no ordinary card, no far merchant).
    """
    import mlflow.sklearn

    from feature_repo.services import service_table
    from training.behaviour import run_cases

    model = mlflow.sklearn.load_model(f"models:/{settings.model_name}/{version}")
    legitimate = holdout[holdout[LABEL] == 0]
    try:
        cases = run_cases(
            model, legitimate, service_table(feature_service), tables, params.features
        )
    except TrainingError as exc:
        return [GateCheck("behaviour_cases", False, float("nan"), None, str(exc))]
    return [
        GateCheck(f"behaviour_{case.name}", case.passed, case.score, case.bar, case.detail)
        for case in cases
    ]


def champion_behaviour(
    settings: Settings,
    params: Params,
    champion: Champion,
    holdout: pd.DataFrame,
    tables: Mapping[str, pd.DataFrame],
) -> dict[str, bool] | None:
    """Which behavioural cases the champion passes, case by case, on this data.

    The champion is played the same cases as the challenger, on the same raw data, with its
    own feature service and registered artifact.

    Returns:
        Case check name -> passed; ``None`` with no champion, or one that cannot be scored on
        this holdout (the gate keeps it as ``champion_unscorable`` whatever the cases say).
    """
    if champion.version is None or champion.pr_auc is None or champion.feature_service is None:
        return None
    checks = behaviour_checks(
        settings, params, champion.version, champion.feature_service, holdout, tables
    )
    return {check.name: check.passed for check in checks}


def required_behaviour(
    challenger: list[GateCheck], champion: dict[str, bool] | None
) -> list[GateCheck]:
    """The challenger's behavioural checks, each required only where the champion passes it.

    Args:
        challenger: The challenger's checks (:func:`behaviour_checks`).
        champion: The champion's outcome per check (:func:`champion_behaviour`); ``None``
            with no champion, when no case is required.

    Returns:
        The checks with ``required`` set and the reason in their detail.
    """
    checks = []
    for check in challenger:
        if champion is None:
            required, why = False, "no champion: reported, not required"
        elif champion.get(check.name, False):
            required, why = True, "the champion passes it"
        else:
            required, why = False, "the champion fails it too: reported, not required"
        checks.append(replace(check, required=required, detail=f"{check.detail} ({why})"))
    return checks


def decide(force: bool, champion: Champion, checks: list[GateCheck]) -> tuple[bool, str]:
    """Whether to move the alias, and why: every required check must pass, unless forced."""
    if force:
        return True, "forced"
    required = [check for check in checks if check.required]
    compared = [check for check in required if not check.name.startswith("behaviour")]
    if champion.version is not None and champion.pr_auc is None:
        return False, "champion_unscorable"
    if not all(check.passed for check in compared):
        return False, "champion_kept"
    if not all(check.passed for check in required):
        return False, "behaviour_failed"
    return True, "no_champion" if champion.version is None else "challenger_better"


def model_requirements(kind: str) -> list[str]:
    """The pinned pip requirements logged with a model of family ``kind``.

    Given explicitly, so MLflow does not infer them (inference loads the model in a child
    process: seconds per logged model) and the artifact names exactly the versions it was
    trained with.
    """
    import pandas as pd
    import sklearn

    from fraud_platform.scoring_model import TREES

    requirements = [
        f"scikit-learn=={sklearn.__version__}",
        f"pandas=={pd.__version__}",
        f"numpy=={np.__version__}",
    ]
    if kind == TREES:
        import lightgbm

        requirements.append(f"lightgbm=={lightgbm.__version__}")
    return requirements


def register_model(result: ModelResult, evaluation: Evaluation, settings: Settings) -> str:
    """Log one fitted model with its signature in the active run and register a new version.

    The artifact is named after the family (``logistic_regression``, ``lightgbm``), so one run
    holds every model it trained.

    Returns:
        The new version number.
    """
    import json
    import tempfile
    from pathlib import Path

    import mlflow.sklearn
    from mlflow.models import infer_signature

    from fraud_platform.scoring_model import PLAIN_FILE, to_plain

    x_example = model_matrix(evaluation.train.head(5), result.features)
    requirements = model_requirements(result.kind)
    with tempfile.TemporaryDirectory(prefix="scorer-") as scratch:
        # The plain form beside the skops artifact: what the API loads (no scikit-learn).
        plain = Path(scratch) / PLAIN_FILE
        plain.write_text(json.dumps(to_plain(result.model)))
        info = mlflow.sklearn.log_model(
            result.model,
            name=result.kind,
            registered_model_name=settings.model_name,
            signature=infer_signature(x_example, result.model.predict_proba(x_example)),
            input_example=x_example,
            # pyfunc returns calibrated probabilities (column 1 = fraud), compared with the
            # threshold tag.
            pyfunc_predict_fn="predict_proba",
            pip_requirements=requirements,
            skops_trusted_types=result.model.trusted_types(),
            extra_files=[str(plain)],
        )
    return str(info.registered_model_version)


def _tag(
    client: MlflowClient,
    settings: Settings,
    version: str,
    result: ModelResult,
    raw_data_md5: str,
    decision: str,
    feature_service: str,
) -> None:
    """The registry tags serving and evaluation need (:class:`ModelTags`) on one version."""
    tags = ModelTags(
        threshold=result.threshold,
        review_threshold=result.review_threshold,
        features=tuple(result.features),
        feature_service=feature_service,
        holdout_pr_auc=result.holdout["pr_auc"],
        raw_data_md5=raw_data_md5,
        promotion_decision=decision,
        model_kind=result.kind,
    )
    for key, value in tags.to_tags().items():
        client.set_model_version_tag(settings.model_name, version, key, value)


def register_challenger(
    client: MlflowClient,
    settings: Settings,
    params: Params,
    evaluation: Evaluation,
    *,
    force: bool,
    raw_data_md5: str,
    feature_service: str,
    progress: Progress,
) -> Decision:
    """Score the champion, register the run's models, run the gate, move the alias if it passes.

    The selected model (best holdout PR-AUC of the run) is registered first and is the
    challenger; the others follow, tagged ``not_selected``. The gate: the challenger's holdout
    PR-AUC beats the champion's, its precision at the operating point is at least the
    champion's, and the registered artifact passes every behavioural case the champion passes
    (:func:`behaviour_checks`, :func:`required_behaviour`); ``force`` moves the alias whatever
    the gate says (the verdict is still computed and logged).

    Args:
        client: A client of the settings' registry.
        settings: The model's name and alias, the raw data (behavioural cases).
        params: ``features`` (the state the cases are folded with).
        evaluation: The evaluated models (and the holdout to compare on).
        force: Move the alias whatever the gate says.
        raw_data_md5: The raw data's version, tagged on the new versions.
        feature_service: The feature service the models were trained on, tagged on them.
        progress: Where to report a champion that cannot be scored, and the verdict.

    Returns:
        The decision, with every check of the gate.
    """
    model = evaluation.model
    champion = score_champion(client, settings, evaluation.holdout, progress)
    version = register_model(model, evaluation, settings)
    _tag(client, settings, version, model, raw_data_md5, "pending", feature_service)
    checks = comparison_checks(model, champion)
    from data.validate import read_raw_tables

    tables = read_raw_tables(settings.paths.raw_dir, validate=False)  # once for both models
    behaviour = behaviour_checks(
        settings, params, version, feature_service, evaluation.holdout, tables
    )
    champion_cases = champion_behaviour(settings, params, champion, evaluation.holdout, tables)
    checks += required_behaviour(behaviour, champion_cases)
    promoted, decision = decide(force, champion, checks)
    client.set_model_version_tag(settings.model_name, version, "promotion_decision", decision)
    for check in checks:
        bar = "" if check.bar is None else f" (bar {check.bar:.4g})"
        verdict = "pass" if check.passed else ("FAIL" if check.required else "warning: fails")
        progress(f"gate: {verdict} {check.name} {check.challenger:.4g}{bar}: {check.detail}")
    if promoted:
        client.set_registered_model_alias(settings.model_name, settings.model_alias, version)
    others: dict[str, str] = {}
    for result in evaluation.candidates:
        if result is not model:
            others[result.kind] = register_model(result, evaluation, settings)
            _tag(
                client, settings, others[result.kind], result, raw_data_md5, "not_selected",
                feature_service,
            )  # fmt: skip
    return Decision(
        version,
        promoted,
        decision,
        champion.version,
        champion.pr_auc,
        others,
        tuple(checks),
        champion.precision,
    )


def evaluate_registered(
    settings: Settings,
    params: Params,
    alias: str | None = None,
    training_set: TrainingSet | None = None,
    progress: Progress = to_stdout,
) -> dict[str, Any]:
    """Score a registered model on the current data's holdout at its own two thresholds.

    Args:
        settings: Project root, MLflow tracking URI, the model's name and default alias.
        params: ``train.holdout_fraction`` is used.
        alias: Registry alias of the model to evaluate; ``Settings.model_alias`` by default.
        training_set: Pre-retrieved training set; retrieved when ``None``.
        progress: Where to report progress.

    Returns:
        ``model_version``, ``threshold``, ``review_threshold`` (``threshold`` for a version
        without a REVIEW band) and the holdout metrics.

    Raises:
        TrainingError: If the alias does not exist, its tags are bad or the holdout lacks a
            class.
    """
    import mlflow.sklearn
    from mlflow.exceptions import MlflowException

    name, alias = settings.model_name, alias or settings.model_alias
    client = mlflow_client(settings)
    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        raise TrainingError(f"no model {name}@{alias} in {settings.tracking_uri}") from exc
    try:
        tags = ModelTags.from_tags(version.tags)
    except ModelTagsError as exc:
        raise TrainingError(f"{name}@{alias} v{version.version}: {exc}") from exc
    features, threshold = list(tags.features), tags.threshold
    if training_set is None:  # the features of the service the model was trained on
        training_set = load_training_set(
            settings, progress, service=tags.feature_service or FEATURE_SERVICE_NAME
        )
    frame = training_set.frame
    holdout = frame.loc[holdout_mask(frame[EVENT_TIMESTAMP], params.train.holdout_fraction)]
    missing = [f for f in features if f not in holdout.columns]
    if missing:
        raise TrainingError(f"{name}@{alias} needs features {missing} the service does not give")
    y_true = holdout[LABEL].to_numpy(dtype=int)
    if len(np.unique(y_true)) < 2:
        raise TrainingError("holdout: one class only; cannot compute PR-AUC")
    model = mlflow.sklearn.load_model(f"models:/{name}@{alias}")
    scores = model.predict_proba(model_matrix(holdout, features))[:, 1]
    result: dict[str, Any] = {
        "model": f"{name}@{alias}",
        "model_version": str(version.version),
        "threshold": threshold,
        "review_threshold": tags.review_at,
        "holdout_rows": len(holdout),
    }
    metrics = score_metrics(
        y_true,
        scores,
        threshold,
        holdout[AMOUNT],
        params.train.review_cost_per_alert,
        tags.review_at,
    )
    result.update({f"holdout_{k}": v for k, v in metrics.items()})
    return result
