"""The benchmark ceilings answer only when enabled, and answer what the benchmarks assume."""

from __future__ import annotations

import json

from litestar import Litestar
from litestar.testing import AsyncTestClient

from backend.app import create_app
from backend.health.controller import MAX_BENCH_BYTES
from tests.conftest import make_settings
from tests.helpers import problem


async def test_the_ceilings_are_absent_unless_enabled(client: AsyncTestClient[Litestar]) -> None:
    echo = await client.post("/_bench/echo", json={"id": "a", "context": "b", "blob": "c"})
    assert echo.status_code == 404
    assert (await client.get("/_bench/bytes", params={"size": 10})).status_code == 404


async def test_the_ceilings_answer_when_enabled(database_url: str) -> None:
    app = create_app(make_settings(bench_routes=True), database_url=database_url)
    async with AsyncTestClient(app=app, base_url="http://127.0.0.1") as client:
        echo = await client.post("/_bench/echo", json={"id": "a", "context": "b", "blob": "c"})
        assert echo.status_code == 201
        assert echo.json() == {"id": "a"}
        for size in (1, 2, 3, 300_000, MAX_BENCH_BYTES):
            answer = await client.get("/_bench/bytes", params={"size": size})
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith("application/json")
            assert len(answer.content) == size
            json.loads(answer.content)  # a well-formed document of exactly that size
        for bad in ("0", str(MAX_BENCH_BYTES + 1), "many"):
            refused = await client.get("/_bench/bytes", params={"size": bad})
            assert refused.status_code == 400
            assert problem(refused)["status"] == 400
