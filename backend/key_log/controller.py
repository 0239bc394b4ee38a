"""HTTP routes of the key log: ``/v1/key-log/...`` (key transparency)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.params import QueryParameter

from backend.http.deps import DbDep, PrincipalDep, RuntimeDep
from backend.key_log import service
from backend.key_log.schemas import KeyLogCheckpointView, KeyLogConsistencyView, KeyLogKeyView

__all__ = ["KeyLogController"]

Size = Annotated[int, QueryParameter(ge=0, le=(1 << 62))]


class KeyLogController(Controller):
    """The key log: its key, checkpoints and consistency proofs (inclusion proofs come with look-ups)."""

    path = "/v1/key-log"
    tags = ("keys",)

    @get("/key", operation_id="getKeyLogKey", opt={"public": True})
    async def key(self, runtime: RuntimeDep) -> KeyLogKeyView:
        """The key log's public key and origin; public. Clients pin it."""
        return service.log_key(runtime)

    @get("/checkpoint", operation_id="getKeyLogCheckpoint")
    async def checkpoint(
        self,
        db: DbDep,
        principal: PrincipalDep,
        size: Annotated[
            int | None, QueryParameter(ge=0, le=(1 << 62), description="A signed checkpoint's size.")
        ] = None,
    ) -> KeyLogCheckpointView:
        """The newest signed checkpoint of the key log (or the one of ``size``): compare it with peers."""
        return await service.get_checkpoint(db, principal, size)

    @get("/proofs/consistency", operation_id="getKeyLogConsistencyProof")
    async def consistency(
        self, db: DbDep, principal: PrincipalDep, old: Size, new: Size
    ) -> KeyLogConsistencyView:
        """Proof that the key log of size ``new`` extends the one of size ``old``."""
        return await service.get_consistency_proof(db, principal, old, new)
