"""The system scope (every organization's rows) is used by the cross-organization jobs only."""

from __future__ import annotations

import re
from pathlib import Path

BACKEND = Path(__file__).resolve().parents[2] / "backend"
# Who may see every organization at once, and why (docs/decisions/0013-row-level-security.md).
ALLOWED = {
    "db/tenancy.py": "defines it",
    "retention/job.py": "the retention job, on its dedicated connection",
    "erasure/executor.py": "carries out approved erasures for the job and in the background",
    "consent/service.py": "expire_due, run by the retention job",
}
_USES = re.compile(r"system_transaction\(|confide\.scope|set_config\('confide\.org_id'")


def test_only_the_jobs_enter_the_system_scope() -> None:
    """A request made for a user never sees another organization: new uses need a decision."""
    found = {
        str(path.relative_to(BACKEND))
        for path in BACKEND.rglob("*.py")
        if _USES.search(path.read_text(encoding="utf-8"))
    }
    assert found <= set(ALLOWED), sorted(found - set(ALLOWED))
    assert "retention/job.py" in found
