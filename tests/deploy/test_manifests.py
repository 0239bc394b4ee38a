"""deploy/k8s: the official schemas (offline), then our own security policy on every object.

Schema validation uses kubernetes-validate, which bundles the Kubernetes OpenAPI-derived
JSON schemas; strict mode refuses unknown fields (a misspelt ``readOnlyRootFilesytem`` is
an error, not a silently ignored key). The policy tests state what the schemas cannot:
non-root, read-only, no capabilities, limits, probes, secrets by reference only.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest

from backend.settings import load_settings
from tests.deploy.helpers import K8S, SETTING_NAMES, TMP, load_documents, manifests

#: The oldest Kubernetes the manifests support (CronJob timeZone, PDB eviction policy) and the newest.
KUBERNETES_VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]
SECRET_SHAPED = re.compile(r"(DATABASE_URL|SECRET|PASSWORD|TOKEN|_KEY)$")
API_PORT = 8000


def _ids(item: tuple[str, dict[str, Any]]) -> str:
    return f"{item[0]}:{item[1]['kind']}/{item[1]['metadata']['name']}"


MANIFESTS = manifests()


def _by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in MANIFESTS if doc["kind"] == kind]


def _one(kind: str, name: str) -> dict[str, Any]:
    (found,) = [doc for doc in _by_kind(kind) if doc["metadata"]["name"] == name]
    return found


def _pod_templates() -> Iterator[tuple[str, dict[str, Any]]]:
    for _, doc in MANIFESTS:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in {"Deployment", "Job", "StatefulSet", "DaemonSet"}:
            yield name, doc["spec"]["template"]
        elif doc["kind"] == "CronJob":
            yield name, doc["spec"]["jobTemplate"]["spec"]["template"]


POD_TEMPLATES = list(_pod_templates())


def test_the_manifests_cover_the_deployment() -> None:
    kinds = {doc["kind"] for _, doc in MANIFESTS}
    assert {
        "Namespace", "ServiceAccount", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget",
        "NetworkPolicy", "CronJob", "Job", "Ingress",
    } <= kinds  # fmt: skip


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("item", MANIFESTS, ids=_ids)
def test_manifest_matches_the_kubernetes_schema(item: tuple[str, dict[str, Any]], version: str) -> None:
    """Strict validation: a schema must exist for the kind, and unknown fields are errors."""
    _, doc = item
    kubernetes_validate.validate(doc, version, strict=True)


def test_the_schema_check_catches_a_misspelt_security_field() -> None:
    """The validator is no rubber stamp: a typo in a security setting fails."""
    deployment = copy.deepcopy(_one("Deployment", "confide-api"))
    context = deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    context["readOnlyRootFilesytem"] = context.pop("readOnlyRootFilesystem")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "Nonsense"}, KUBERNETES_VERSIONS[-1])


def test_kustomization_lists_every_manifest_and_pins_the_image() -> None:
    (kustomization,) = load_documents(K8S / "kustomization.yaml")
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)
    assert kustomization["namespace"] == "confide"
    for image in kustomization["images"]:
        assert image["newTag"] not in {"", "latest"}


def test_every_object_lives_in_the_confide_namespace() -> None:
    for _, doc in MANIFESTS:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "confide", doc["metadata"]["name"]


def test_namespace_enforces_the_restricted_pod_security_standard() -> None:
    labels = _one("Namespace", "confide")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_no_secret_values_in_the_manifests() -> None:
    """Secrets are referenced by name and key; none is defined here, none appears as a literal."""
    assert not _by_kind("Secret")
    for _, doc in MANIFESTS:
        if doc["kind"] == "ConfigMap":
            for key in doc["data"]:
                assert not SECRET_SHAPED.search(key), key
    for name, template in POD_TEMPLATES:
        for container in template["spec"]["containers"]:
            for env in container.get("env", []):
                if SECRET_SHAPED.search(env["name"]):
                    assert "value" not in env, (name, env["name"])
                    assert "secretKeyRef" in env["valueFrom"], (name, env["name"])


@pytest.mark.parametrize(("name", "template"), POD_TEMPLATES, ids=[n for n, _ in POD_TEMPLATES])
def test_pod_is_locked_down(name: str, template: dict[str, Any]) -> None:
    """Non-root, no service account token, runtime seccomp, no host namespaces or paths."""
    spec = template["spec"]
    assert spec["automountServiceAccountToken"] is False, name
    assert spec["serviceAccountName"] == "confide"
    context = spec["securityContext"]
    assert context["runAsNonRoot"] is True
    assert isinstance(context["runAsUser"], int)
    assert context["runAsUser"] > 0
    assert context["seccompProfile"]["type"] == "RuntimeDefault"
    for host in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(host), (name, host)
    for volume in spec.get("volumes", []):
        assert "hostPath" not in volume, (name, volume["name"])
        if "emptyDir" in volume:
            assert volume["emptyDir"].get("sizeLimit"), (name, volume["name"])
        if "secret" in volume:
            assert volume["secret"]["defaultMode"] & 0o007 == 0, "no access for others"


@pytest.mark.parametrize(("name", "template"), POD_TEMPLATES, ids=[n for n, _ in POD_TEMPLATES])
def test_every_container_is_locked_down(name: str, template: dict[str, Any]) -> None:
    """Read-only root, no privilege escalation, every capability dropped, limits set, pinned image."""
    spec = template["spec"]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for container in spec.get("initContainers", []) + spec["containers"]:
        where = (name, container["name"])
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, where
        assert context["allowPrivilegeEscalation"] is False, where
        assert context.get("privileged", False) is False, where
        assert context["runAsNonRoot"] is True, where
        assert context["capabilities"]["drop"] == ["ALL"], where
        assert not context["capabilities"].get("add"), where
        assert context["seccompProfile"]["type"] == "RuntimeDefault", where
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][bound]), (where, bound)
        image = container["image"]
        assert "@sha256:" in image or re.search(r":[A-Za-z0-9._-]+$", image.rsplit("/", 1)[-1]), where
        assert not image.endswith(":latest"), where
        mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
        assert TMP in mounts, f"{where}: the read-only root needs a writable /tmp"
        for mount in mounts.values():
            if "secret" in volumes[mount["name"]]:
                assert mount.get("readOnly") is True, (where, mount["name"])


@pytest.mark.parametrize(("name", "template"), POD_TEMPLATES, ids=[n for n, _ in POD_TEMPLATES])
def test_environment_names_are_real_settings(name: str, template: dict[str, Any]) -> None:
    """A misspelt CONFIDE_* variable would stop start-up; catch it here instead."""
    names = {e["name"] for c in template["spec"]["containers"] for e in c.get("env", [])}
    names |= {key for cm in _by_kind("ConfigMap") for key in cm["data"]}
    assert names <= SETTING_NAMES, (name, names - SETTING_NAMES)


def test_api_settings_load_in_production_mode() -> None:
    """The ConfigMap plus the Deployment's variables make settings the service accepts."""
    container = _one("Deployment", "confide-api")["spec"]["template"]["spec"]["containers"][0]
    environ = dict(_one("ConfigMap", "confide-config")["data"])
    for env in container["env"]:
        environ[env["name"]] = env.get("value", "from-a-secret")
    settings = load_settings(environ)
    assert settings.environment == "production"
    assert settings.behind_tls is True
    assert settings.host == "0.0.0.0"  # noqa: S104 -- inside a pod, behind the Service
    assert settings.port == API_PORT


def test_api_deployment_probes_and_rollout() -> None:
    deployment = _one("Deployment", "confide-api")
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    (port,) = container["ports"]
    assert port["containerPort"] == API_PORT
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["startupProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in {port["name"], API_PORT}
    env = {e["name"]: e for e in container["env"]}
    assert env["CONFIDE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "app-url"
    assert env["CONFIDE_AUDIT_LOG_KEY_FILE"]["value"].startswith("/var/run/secrets/")
    assert env["CONFIDE_SECRET_KEY_FILE"]["value"].startswith("/var/run/secrets/")


def test_service_and_budget_select_the_api_pods() -> None:
    pod_labels = _one("Deployment", "confide-api")["spec"]["template"]["metadata"]["labels"]
    service = _one("Service", "confide-api")
    budget = _one("PodDisruptionBudget", "confide-api")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget["spec"]["minAvailable"] >= 1
    assert service["spec"]["type"] == "ClusterIP"


def test_service_account_has_no_token() -> None:
    assert _one("ServiceAccount", "confide")["automountServiceAccountToken"] is False


def test_retention_cronjob_never_overlaps_and_is_bounded() -> None:
    cronjob = _one("CronJob", "confide-retention")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    job = cronjob["spec"]["jobTemplate"]["spec"]
    assert job["backoffLimit"] <= 3
    assert job["activeDeadlineSeconds"] > 0
    (container,) = job["template"]["spec"]["containers"]
    assert container["args"] == ["retention", "run"]


def test_migration_job_runs_as_the_owner_and_grants_the_app_role() -> None:
    job = _one("Job", "confide-migrate")
    assert job["spec"]["backoffLimit"] <= 3
    assert job["spec"]["activeDeadlineSeconds"] > 0
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"][:2] == ["migrate", "--grant-app-role"]
    env = {e["name"]: e for e in container["env"]}
    assert env["CONFIDE_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "owner-url"
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    assert mounts == [TMP], "no key material in the migration pod"


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not selector:
        return True
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        value = labels.get(expression["key"])
        if expression["operator"] == "In" and value not in expression["values"]:
            return False
    return True


def test_network_is_default_deny() -> None:
    deny = _one("NetworkPolicy", "default-deny")["spec"]
    assert deny["podSelector"] == {}
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert not deny.get("ingress")
    assert not deny.get("egress")


def test_api_accepts_only_the_ingress_controller_on_its_port() -> None:
    policy = _one("NetworkPolicy", "confide-api")["spec"]
    (rule,) = policy["ingress"]
    (peer,) = rule["from"]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "ingress-nginx"}
    assert "ipBlock" not in peer
    assert [p["port"] for p in rule["ports"]] == [API_PORT]


@pytest.mark.parametrize("policy_name", ["confide-api", "confide-jobs"])
def test_egress_only_to_postgres_dns_and_the_collector(policy_name: str) -> None:
    policy = _one("NetworkPolicy", policy_name)["spec"]
    assert "Egress" in policy["policyTypes"]
    ports = sorted((p["port"], p.get("protocol", "TCP")) for rule in policy["egress"] for p in rule["ports"])
    assert ports == [(53, "TCP"), (53, "UDP"), (4318, "TCP"), (5432, "TCP")]
    for rule in policy["egress"]:
        for peer in rule["to"]:
            if "ipBlock" in peer:
                assert not peer["ipBlock"]["cidr"].endswith("/0"), "no open egress"


def test_jobs_accept_no_connections() -> None:
    policy = _one("NetworkPolicy", "confide-jobs")["spec"]
    assert "Ingress" in policy["policyTypes"]
    assert not policy.get("ingress")


def test_every_pod_is_selected_by_an_allowing_policy() -> None:
    allowing = [p for p in _by_kind("NetworkPolicy") if p["metadata"]["name"] != "default-deny"]
    for name, template in POD_TEMPLATES:
        labels = template["metadata"]["labels"]
        assert any(_selects(p["spec"]["podSelector"], labels) for p in allowing), name
