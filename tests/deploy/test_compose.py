"""deploy/compose.yaml and the collector configuration: the local stack is wired and hardened."""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

import pytest

from tests.deploy.helpers import DEPLOY, SETTING_NAMES, TMP, load_documents

(COMPOSE,) = load_documents(DEPLOY / "compose.yaml")
(COLLECTOR,) = load_documents(DEPLOY / "otel-collector.yaml")
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
CONFIDE = [name for name, svc in SERVICES.items() if svc.get("image") == "confide:local"]
APIS = ["api-1", "api-2"]


def test_the_stack_has_its_parts() -> None:
    assert {"postgres", "migrate", "otel-collector", *APIS} <= set(SERVICES)


def test_images_are_pinned() -> None:
    for name, service in SERVICES.items():
        image = service["image"]
        assert ":" in image, name
        assert not image.endswith(":latest"), name


@pytest.mark.parametrize("name", CONFIDE)
def test_confide_containers_are_hardened(name: str) -> None:
    service = SERVICES[name]
    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    assert any(mount.startswith(f"{TMP}:") for mount in service["tmpfs"])
    uid = service["user"].split(":")[0]
    if name == "keys":
        # The one-shot key generator hands files to the service user, and nothing else.
        assert set(service["cap_add"]) <= {"CHOWN", "FOWNER"}
        assert service["network_mode"] == "none"
    else:
        assert int(uid) > 0
        assert not service.get("cap_add")


@pytest.mark.parametrize("name", APIS)
def test_api_instances_wait_for_migrations_and_listen_on_loopback(name: str) -> None:
    service = SERVICES[name]
    assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for port in service["ports"]:
        assert port.startswith("127.0.0.1:"), "published on loopback only"
    env = service["environment"]
    assert env["CONFIDE_ENVIRONMENT"] == "production"
    assert env["CONFIDE_SECRET_KEY_FILE"].startswith("/run/confide-keys/")
    assert env["CONFIDE_AUDIT_LOG_KEY_FILE"].startswith("/run/confide-keys/")
    assert urllib.parse.urlsplit(env["CONFIDE_DATABASE_URL"]).username == "confide_app"


def test_instances_have_distinct_names_and_one_shared_database() -> None:
    envs = [SERVICES[name]["environment"] for name in APIS]
    assert len({env["CONFIDE_INSTANCE_ID"] for env in envs}) == len(APIS)
    assert len({env["CONFIDE_DATABASE_URL"] for env in envs}) == 1


def test_migrations_run_as_the_owner_and_grant_the_app_role() -> None:
    migrate = SERVICES["migrate"]
    assert migrate["command"] == ["migrate", "--grant-app-role", "confide_app"]
    assert urllib.parse.urlsplit(migrate["environment"]["CONFIDE_DATABASE_URL"]).username == "confide_owner"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"


@pytest.mark.parametrize("name", CONFIDE)
def test_environment_names_are_real_settings(name: str) -> None:
    names = {key for key in SERVICES[name].get("environment", {}) if key.startswith("CONFIDE_")}
    assert names <= SETTING_NAMES, names - SETTING_NAMES


def test_the_database_port_is_not_published() -> None:
    assert "ports" not in SERVICES["postgres"]


def test_traces_reach_the_collector() -> None:
    """The API's OTLP endpoint names the collector service and a port its receiver listens on."""
    endpoint = urllib.parse.urlsplit(SERVICES["api-1"]["environment"]["CONFIDE_OTEL_ENDPOINT"])
    assert endpoint.hostname == "otel-collector"
    listen = COLLECTOR["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert listen.rsplit(":", 1)[1] == str(endpoint.port)
    assert endpoint.path == "/v1/traces"
    shared = set(SERVICES["api-1"]["networks"]) & set(SERVICES["otel-collector"]["networks"])
    assert shared


def test_collector_pipeline_uses_only_defined_components() -> None:
    pipeline = COLLECTOR["service"]["pipelines"]["traces"]
    for kind in ("receivers", "processors", "exporters"):
        for component in pipeline[kind]:
            assert component in COLLECTOR[kind], component
    # The memory limiter must come first, before anything buffers.
    assert pipeline["processors"][0] == "memory_limiter"


def test_local_stack_mounts_the_roles_script() -> None:
    volumes = SERVICES["postgres"]["volumes"]
    assert any(re.match(r"\./postgres/roles\.sql:", v) for v in volumes)
    assert (DEPLOY / "postgres" / "roles.sql").exists()
    assert (DEPLOY / "postgres" / "compose-init.sh").exists()
