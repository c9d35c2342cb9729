"""docker-compose.yml: services, health, start order, settings and mounts (parsed, no engine)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from fraud_platform.redis_server import PERSISTENCE_ARGS
from fraud_platform.settings import Settings
from tests.support.infra_files import ROOT

EXPECTED_SERVICES = {
    *("redis", "mlflow", "bootstrap", "api"),
    *("ops", "prometheus", "grafana", "evidently", "feast-ui"),  # the operator's console
}
ONE_SHOT = {"bootstrap"}
# Run `fraud` and read fraud_platform.settings.
APP_SERVICES = ("bootstrap", "api", "ops", "evidently", "feast-ui")
# Read by docker/entrypoint.sh (not by Settings): the container's own ports and MLflow's hosts.
ENTRYPOINT_VARIABLES = {"API_PORT", "MLFLOW_PORT", "MLFLOW_ALLOWED_HOSTS"}
INTERPOLATION = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _interpolations(node: Any) -> list[tuple[str, str, str]]:
    """Every ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?message}`` in the file."""
    if isinstance(node, dict):
        return [found for value in node.values() for found in _interpolations(value)]
    if isinstance(node, list):
        return [found for value in node for found in _interpolations(value)]
    if isinstance(node, str):
        return [
            (m.group(1), m.group(2) or "", m.group(3) or "") for m in INTERPOLATION.finditer(node)
        ]
    return []


def test_services_present(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == EXPECTED_SERVICES


@pytest.mark.parametrize("name", sorted(EXPECTED_SERVICES - ONE_SHOT))
def test_long_running_services_have_healthchecks(compose: dict[str, Any], name: str) -> None:
    check = compose["services"][name].get("healthcheck")
    assert check, f"{name} has no healthcheck"
    assert check["test"][0] in {"CMD", "CMD-SHELL"} and len(check["test"]) > 1
    assert not check.get("disable", False)


def test_one_shot_bootstrap_waits_for_redis_and_mlflow(compose: dict[str, Any]) -> None:
    bootstrap = compose["services"]["bootstrap"]
    assert bootstrap.get("restart", "no") == "no", "a one-shot must not restart"
    assert bootstrap["depends_on"] == {
        "redis": {"condition": "service_healthy"},
        "mlflow": {"condition": "service_healthy"},
    }
    assert bootstrap["command"] == ["bootstrap"]


def test_api_start_order(compose: dict[str, Any]) -> None:
    depends = compose["services"]["api"]["depends_on"]
    assert depends["redis"]["condition"] == "service_healthy"
    assert depends["mlflow"]["condition"] == "service_healthy"
    assert depends["bootstrap"]["condition"] == "service_completed_successfully"


def test_api_port_and_healthcheck_agree(compose: dict[str, Any]) -> None:
    api = compose["services"]["api"]
    targets = {str(port).rsplit(":", 1)[-1] for port in api["ports"]}
    assert targets == {"8000"}
    assert _environment(api)["API_PORT"] == "8000"
    assert "localhost:8000/health" in " ".join(api["healthcheck"]["test"])


def test_mlflow_server_and_healthcheck(compose: dict[str, Any]) -> None:
    mlflow = compose["services"]["mlflow"]
    assert "localhost:5000/health" in " ".join(mlflow["healthcheck"]["test"])
    assert any(str(port).endswith(":5000") for port in mlflow["ports"])
    assert any(str(volume).endswith(":/mlflow") for volume in mlflow["volumes"])
    entrypoint = (ROOT / "docker" / "entrypoint.sh").read_text()
    for flag in ("--serve-artifacts", "--backend-store-uri", "sqlite:", "--artifacts-destination"):
        assert flag in entrypoint


def test_redis_image_healthcheck_and_volume(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert re.fullmatch(r"redis:7\.\d+\.\d+(-[a-z0-9]+)?", redis["image"]), redis["image"]
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert any(str(volume).endswith(":/data") for volume in redis["volumes"])


def test_redis_keeps_an_append_only_file_like_the_local_server(compose: dict[str, Any]) -> None:
    command = compose["services"]["redis"]["command"]
    assert command[0] == "redis-server"
    flags = dict(zip(command[1::2], command[2::2], strict=True))
    assert flags["--appendonly"] == "yes" and flags["--appendfsync"] == "everysec"
    local = dict(zip(PERSISTENCE_ARGS[::2], PERSISTENCE_ARGS[1::2], strict=True))
    assert {k: flags.get(k) for k in local} == local  # one persistence policy, two launchers


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_environment_names_are_settings(compose: dict[str, Any], name: str) -> None:
    fields = {field.upper() for field in Settings.model_fields}
    unknown = set(_environment(compose["services"][name])) - fields - ENTRYPOINT_VARIABLES
    assert not unknown, f"{name} sets {unknown}, which fraud_platform.settings does not read"
    env = _environment(compose["services"][name])
    for required in ("REDIS_URL", "MLFLOW_TRACKING_URI", "PROJECT_ROOT"):
        assert required in env, f"{name} lacks {required}"


def test_entrypoint_variables_are_read_by_the_entrypoint() -> None:
    entrypoint = (ROOT / "docker" / "entrypoint.sh").read_text()
    for variable in ENTRYPOINT_VARIABLES:
        assert "${" + variable in entrypoint, variable


def test_api_keys_are_required(compose: dict[str, Any]) -> None:
    value = _environment(compose["services"]["api"])["API_KEYS"]
    assert value.startswith("${API_KEYS:?"), "the API must refuse to start without keys"


def test_every_interpolation_has_a_default_or_is_required(compose: dict[str, Any]) -> None:
    found = _interpolations(compose)
    assert found
    bare = sorted({name for name, operator, _ in found if operator not in {":-", "-", ":?", "?"}})
    assert not bare, f"${{VAR}} without a default or :? silently becomes empty: {bare}"


def test_env_example_documents_every_variable(compose: dict[str, Any]) -> None:
    example = (ROOT / ".env.example").read_text()
    names = {name for name, _, _ in _interpolations(compose)} - {"FRAUD_IMAGE_TAG"}
    missing = sorted(n for n in names if not re.search(rf"^#?\s*{n}=", example, re.MULTILINE))
    assert not missing, f".env.example does not mention {missing}"


def test_project_root_matches_the_image(compose: dict[str, Any]) -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    image_root = re.search(r"PROJECT_ROOT=(\S+)", dockerfile)
    assert image_root, "the image sets no PROJECT_ROOT"
    for name in APP_SERVICES:
        service = compose["services"][name]
        assert _environment(service)["PROJECT_ROOT"] == image_root.group(1)
        assert any(str(v).split(":")[1] == image_root.group(1) for v in service["volumes"]), (
            f"{name}: PROJECT_ROOT is not a volume, state would be lost"
        )


def test_build_context_and_dockerfile_exist(compose: dict[str, Any]) -> None:
    builds = [s["build"] for s in compose["services"].values() if "build" in s]
    assert builds
    for build in builds:
        context = ROOT / build["context"]
        assert context.is_dir()
        assert (context / build["dockerfile"]).is_file()


def test_bind_mounts_exist_in_the_repo(compose: dict[str, Any]) -> None:
    named = set(compose.get("volumes") or {})
    binds = 0
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if source.startswith((".", "/")):
                binds += 1
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in named, f"{name} uses undeclared volume {source}"
    assert binds >= 1


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service.get("image", "")
        if "build" in service:
            continue  # built here from docker/Dockerfile, whose base image is checked there
        assert ":" in image and not image.endswith(":latest"), f"{name}: unpinned {image!r}"
        assert re.search(r":v?\d+\.\d+", image), f"{name}: pin a version, not {image!r}"


def test_console_services_use_the_repository_configuration(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["ops"]["command"][:3] == ["fraud", "ops", "run"]
    assert "9108" in " ".join(services["ops"]["healthcheck"]["test"])
    prometheus = services["prometheus"]
    assert "./ops/prometheus:/etc/prometheus:ro" in prometheus["volumes"]
    config = yaml.safe_load((ROOT / "ops" / "prometheus" / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"][0] for job in config["scrape_configs"]
    }
    assert targets == {"fraud-api": "api:8000", "fraud-ops": "ops:9108"}  # compose's names
    grafana = services["grafana"]["volumes"]
    assert "./ops/grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana
    assert services["evidently"]["command"][:3] == ["fraud", "ui", "evidently"]
    assert services["feast-ui"]["command"][:3] == ["fraud", "ui", "feast"]
