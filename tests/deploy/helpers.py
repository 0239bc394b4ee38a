"""Shared readers for the deploy/ checks: YAML documents and the setting names they may use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from backend.settings import Settings
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
#: The one writable path in every container (a mount point here, not a temporary file).
TMP = "/tmp"  # noqa: S108
#: Every environment variable the service reads.
SETTING_NAMES = frozenset(f"CONFIDE_{name.upper()}" for name in Settings.__struct_fields__)


def load_documents(path: Path) -> list[dict[str, Any]]:
    """The non-empty YAML documents of ``path`` (safe loader: no tags, no code)."""
    with path.open(encoding="utf-8") as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc]


def manifests() -> list[tuple[str, dict[str, Any]]]:
    """(file name, document) for every Kubernetes object under deploy/k8s (not the kustomization)."""
    found: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        found.extend((path.name, doc) for doc in load_documents(path))
    return found
