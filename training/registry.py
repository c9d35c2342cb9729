"""Training phase 3, the registry decision: register the challenger, move the alias if it wins.

The model is registered under ``Settings.model_name`` and promoted by moving
``Settings.model_alias`` (``MODEL_NAME``/``MODEL_ALIAS``: the same settings the API loads
``models:/<name>@<alias>`` with); models are addressed by alias, never by stage.

Champion/challenger: every model a run trains (``train.models``) is registered; the one with
the best holdout PR-AUC is the run's challenger, the others are tagged ``not_selected`` and stay
registered beside it. The alias moves to the challenger only when its holdout PR-AUC is
strictly higher than that of the current version under the alias (champion) scored on the
*same* holdout rows now, or when no champion exists, or when promotion is forced. The decision
is tagged on each new version with its threshold, features and family
(:class:`fraud_platform.contracts.ModelTags`, what the API needs to serve it) and logged on
the run (:func:`training.run_log.log_decision`).

:func:`evaluate_registered` scores any registered version on the current data's holdout at its
own threshold (``fraud train evaluate``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from feature_repo.services import FEATURE_SERVICE_NAME
from fraud_platform.contracts import EVENT_TIMESTAMP, LABEL, ModelTags, ModelTagsError
from fraud_platform.tracking import mlflow_client
from training.dataset import Progress, TrainingError, TrainingSet, load_training_set, to_stdout
from training.evaluation import Evaluation, ModelResult, holdout_mask, score_metrics
from training.model import model_matrix

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from fraud_platform.settings import Params, Settings


@dataclass(frozen=True)
class Decision:
    """What the registry decided for a run's challenger.

    Attributes:
        version: The version registered by this run (the challenger).
        promoted: Whether the alias now points at it.
        decision: ``no_champion``, ``forced``, ``challenger_better``, ``champion_kept`` or
            ``champion_unscorable``.
        champion_version: The version under the alias before this run, if any.
        champion_pr_auc: Its PR-AUC on this run's holdout, if it could be scored.
        others: Family -> version of the run's other models (registered, ``not_selected``).
    """

    version: str
    promoted: bool
    decision: str
    champion_version: str | None
    champion_pr_auc: float | None
    others: dict[str, str] = field(default_factory=dict)


def champion_pr_auc(
    client: MlflowClient, settings: Settings, holdout: pd.DataFrame, progress: Progress
) -> tuple[str | None, float | None]:
    """(version, holdout PR-AUC) of the current model under the alias, on this holdout.

    Returns:
        ``(None, None)`` when the alias points nowhere, ``(version, None)`` when the champion
        cannot be scored (bad tags, its features not in the frame, or it does not load).
    """
    import mlflow.sklearn
    from mlflow.exceptions import MlflowException
    from sklearn.metrics import average_precision_score

    try:
        champion = client.get_model_version_by_alias(settings.model_name, settings.model_alias)
    except MlflowException:
        return None, None
    try:
        features = list(ModelTags.from_tags(champion.tags).features)
    except ModelTagsError as exc:
        progress(f"champion v{champion.version} cannot be scored: {exc}")
        return str(champion.version), None
    missing = [name for name in features if name not in holdout.columns]
    if missing:
        progress(f"champion v{champion.version} cannot be scored: missing features {missing}")
        return str(champion.version), None
    try:
        model = mlflow.sklearn.load_model(settings.model_uri)
    except (MlflowException, OSError) as exc:
        progress(f"champion v{champion.version} does not load: {exc}")
        return str(champion.version), None
    scores = model.predict_proba(model_matrix(holdout, features))[:, 1]
    y_true = holdout[LABEL].to_numpy(dtype=int)
    # PR-AUC ranks, so the champion's own threshold does not enter the comparison.
    return str(champion.version), float(average_precision_score(y_true, scores))


def decide(
    force: bool, champion_version: str | None, champion_pr_auc: float | None, challenger: float
) -> tuple[bool, str]:
    """Whether to move the alias, and why."""
    if force:
        return True, "forced"
    if champion_version is None:
        return True, "no_champion"
    if champion_pr_auc is None:
        return False, "champion_unscorable"
    if challenger > champion_pr_auc:
        return True, "challenger_better"
    return False, "champion_kept"


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
    import mlflow.sklearn
    from mlflow.models import infer_signature


    x_example = model_matrix(evaluation.train.head(5), result.features)
    requirements = model_requirements(result.kind)
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
    evaluation: Evaluation,
    *,
    force: bool,
    raw_data_md5: str,
    feature_service: str,
    progress: Progress,
) -> Decision:
    """Score the champion, register the run's models, tag them, move the alias if one wins.

    The selected model (best holdout PR-AUC of the run) is registered first and is the
    challenger; the others follow, tagged ``not_selected``.

    Args:
        client: A client of the settings' registry.
        settings: The model's name and alias.
        evaluation: The evaluated models (and the holdout to compare on).
        force: Move the alias whatever the comparison says.
        raw_data_md5: The raw data's version, tagged on the new versions.
        feature_service: The feature service the models were trained on, tagged on them.
        progress: Where to report a champion that cannot be scored.

    Returns:
        The decision.
    """
    model = evaluation.model
    champion_version, champion_score = champion_pr_auc(
        client, settings, evaluation.holdout, progress
    )
    version = register_model(model, evaluation, settings)
    promoted, decision = decide(force, champion_version, champion_score, model.holdout["pr_auc"])
    _tag(client, settings, version, model, raw_data_md5, decision, feature_service)
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
    return Decision(version, promoted, decision, champion_version, champion_score, others)


def evaluate_registered(
    settings: Settings,
    params: Params,
    alias: str | None = None,
    training_set: TrainingSet | None = None,
    progress: Progress = to_stdout,
) -> dict[str, Any]:
    """Score a registered model on the current data's holdout at its own threshold.

    Args:
        settings: Project root, MLflow tracking URI, the model's name and default alias.
        params: ``train.holdout_fraction`` is used.
        alias: Registry alias of the model to evaluate; ``Settings.model_alias`` by default.
        training_set: Pre-retrieved training set; retrieved when ``None``.
        progress: Where to report progress.

    Returns:
        ``model_version``, ``threshold`` and the holdout metrics.

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
        "holdout_rows": len(holdout),
    }
    result.update({f"holdout_{k}": v for k, v in score_metrics(y_true, scores, threshold).items()})
    return result
