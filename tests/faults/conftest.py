"""Fixtures of the fault tests: server processes that are always reaped.

``start_server`` (and the ``at_rest`` search it runs afterwards) come from the end-to-end
suite: servers on the test's database, as the application role, whose logs and database
must hold none of the test's secrets. ``servers`` starts servers on any database URL (a
proxied one, or a private cluster's).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import at_rest, start_server  # noqa: F401 -- fixtures shared with tests/e2e
from tests.faults.support import Servers


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    started = Servers(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()
