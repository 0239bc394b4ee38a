"""Key directory rules.

The server checks what it can without secrets: a bundle's self-signature, that it
names the caller, that its version follows the last one and that the previous
signing key signed it (chain of custody). Clients still verify the chain they get:
the server is not trusted to vouch for keys, only to store and serve them. Every
published bundle is a leaf of the key log (:mod:`backend.key_log`), logged in the
publish's transaction; a look-up carries each bundle's inclusion proof and the signed
checkpoint, so showing different keys to different people leaves signed evidence.
Key backups are opaque to the server; it checks only their format, their owner and
a compare-and-swap revision, so two devices cannot silently overwrite each other.
"""

from __future__ import annotations

import re
import uuid

import asyncpg

from backend.audit_trail import Action, AuditContext, AuditEvent, record
from backend.auth.principal import Principal
from backend.db.tenancy import tenant_transaction
from backend.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PreconditionFailedError,
    PreconditionRequiredError,
)
from backend.key_log import integrate, key_log_signer
from backend.key_log.service import look_up_proofs
from backend.keys import repository as repo
from backend.keys.schemas import BackupStored, KeyListing, PublishedBundle, PublishedKey
from backend.policy import Action as PolicyAction
from backend.policy import Resource, require
from backend.runtime import Runtime
from crypto.public import (
    KeyBackup,
    KeyBundle,
    bundle_fingerprint,
    decode_bundle,
    decode_key_backup,
    encode,
    verify_bundle,
    verify_rotation,
)

__all__ = ["get_backup", "list_keys", "publish_bundle", "put_backup", "revoke_bundle"]


def _event(principal: Principal, action: Action, event_type: str, entity_id: uuid.UUID) -> AuditEvent:
    return AuditEvent(
        action=action,
        event_type=event_type,
        org_id=principal.org_id,
        agent_account_id=principal.account_id,
        agent_role=principal.role,  # type: ignore[arg-type]
        entity_type="account_keys",
        entity_id=entity_id,
        subject_id=entity_id if principal.role == "client" and entity_id == principal.account_id else None,
    )


def _own(principal: Principal) -> Resource:
    return Resource(org_id=principal.org_id, owner_id=principal.account_id)


async def publish_bundle(
    rt: Runtime, conn: asyncpg.Connection, principal: Principal, bundle: KeyBundle, ctx: AuditContext
) -> tuple[PublishedKey, bool]:
    """Publish the caller's first bundle or a signed rotation; ``(result, created)``.

    Publishing the same bundle again returns the stored one (idempotent); another
    bundle for a version already taken is a conflict.
    """
    require(principal.actor, PolicyAction.MANAGE_OWN_KEYS, _own(principal))
    if bundle.account_id != principal.account_id:
        raise InvalidInputError("The key bundle names another account.")
    verify_bundle(bundle)
    canonical = encode(bundle)
    fingerprint = bundle_fingerprint(bundle)
    now = rt.clock.now()
    async with tenant_transaction(conn, principal.org_id):
        await repo.lock_account_keys(conn, principal.account_id)
        existing = await repo.list_bundles(conn, principal.account_id)
        for row in existing:
            if row.key_version == bundle.key_version:
                if row.bundle != canonical:
                    raise ConflictError("This key version is already published with other keys.")
                published = PublishedKey(
                    account_id=principal.account_id,
                    key_version=row.key_version,
                    fingerprint=row.fingerprint,
                    published_at=row.published_at,
                )
                return published, False
        if existing:
            previous = decode_bundle(existing[-1].bundle)
            verify_rotation(previous, bundle)
            event_type = "key.rotate"
        elif bundle.key_version != 1:
            raise InvalidInputError("The first published key bundle must be version 1.")
        else:
            event_type = "key.publish"
        await repo.insert_bundle(
            conn,
            account_id=principal.account_id,
            org_id=principal.org_id,
            key_version=bundle.key_version,
            encryption_key=bundle.encryption_key,
            signing_key=bundle.signing_key,
            bundle=canonical,
            fingerprint=fingerprint,
            bundle_created_at=bundle.created_at,
            now=now,
        )
        # The insert queued the bundle for the key log: it is logged and signed before commit.
        await integrate(conn, key_log_signer(rt.settings), now)
        await record(conn, _event(principal, Action.CREATE, event_type, principal.account_id), ctx, now)
    return (
        PublishedKey(
            account_id=principal.account_id,
            key_version=bundle.key_version,
            fingerprint=fingerprint,
            published_at=now,
        ),
        True,
    )


async def revoke_bundle(
    rt: Runtime, conn: asyncpg.Connection, principal: Principal, key_version: int, ctx: AuditContext
) -> None:
    """Mark one of the caller's key versions revoked (it stays listed, for old data)."""
    require(principal.actor, PolicyAction.MANAGE_OWN_KEYS, _own(principal))
    now = rt.clock.now()
    async with tenant_transaction(conn, principal.org_id):
        await repo.lock_account_keys(conn, principal.account_id)
        if not await repo.revoke_bundle(conn, principal.account_id, key_version, now):
            raise NotFoundError("No such key version.")
        await record(conn, _event(principal, Action.UPDATE, "key.revoke", principal.account_id), ctx, now)


async def list_keys(
    rt: Runtime, conn: asyncpg.Connection, principal: Principal, account_id: uuid.UUID, ctx: AuditContext
) -> KeyListing:
    """Every key version of an account in the caller's organization, with fingerprints."""
    now = rt.clock.now()
    async with tenant_transaction(conn, principal.org_id):
        org_id = await repo.account_org(conn, account_id)
        if org_id is None:
            raise NotFoundError
        require(principal.actor, PolicyAction.READ_PUBLIC_KEYS, Resource(org_id=org_id, owner_id=account_id))
        rows = await repo.list_bundles(conn, account_id)
        checkpoint, proofs = await look_up_proofs(conn, account_id)
        await record(conn, _event(principal, Action.READ, "key.read", account_id), ctx, now)
    live = [row.key_version for row in rows if row.revoked_at is None]
    current = live[-1] if live and live[-1] == rows[-1].key_version else None
    return KeyListing(
        account_id=account_id,
        bundles=[
            PublishedBundle(
                bundle=decode_bundle(row.bundle),
                fingerprint=row.fingerprint,
                published_at=row.published_at,
                revoked_at=row.revoked_at,
                current=row.key_version == current,
                log=proofs.get(row.key_version),
            )
            for row in rows
        ],
        checkpoint=checkpoint,
    )


_ETAG_RE = re.compile(r'^"r([0-9]{1,10})"$')


def _revision_of(etag: str) -> int | None:
    """The revision an ``If-Match`` value names (ASCII digits only), or None."""
    match = _ETAG_RE.match(etag.strip())
    return int(match.group(1)) if match else None


def backup_etag(revision: int) -> str:
    """The ``ETag`` of a backup revision."""
    return f'"r{revision}"'


async def put_backup(
    rt: Runtime,
    conn: asyncpg.Connection,
    principal: Principal,
    backup: KeyBackup,
    *,
    ctx: AuditContext,
    if_match: str | None,
) -> tuple[BackupStored, bool]:
    """Store the caller's encrypted key backup with compare-and-swap.

    The first upload needs no precondition (or ``If-None-Match: *`` semantics, which
    is the default); replacing one needs ``If-Match`` with the current ``ETag``.
    """
    require(principal.actor, PolicyAction.MANAGE_OWN_KEYS, _own(principal))
    if backup.account_id != principal.account_id:
        raise InvalidInputError("The key backup names another account.")
    blob = encode(backup)
    now = rt.clock.now()
    async with tenant_transaction(conn, principal.org_id):
        await repo.lock_account_keys(conn, principal.account_id)
        published = {row.key_version for row in await repo.list_bundles(conn, principal.account_id)}
        if backup.key_version not in published:
            raise InvalidInputError("The key backup is for a key version that was never published.")
        current = await repo.get_backup(conn, principal.account_id, lock=True)
        if current is None:
            if if_match is not None and if_match.strip() != "*":
                raise PreconditionFailedError("There is no backup to replace.")
            revision = 1
        else:
            if if_match is None:
                raise PreconditionRequiredError("Send If-Match with the current backup's ETag.")
            if if_match.strip() != "*" and _revision_of(if_match) != current.revision:
                raise PreconditionFailedError("The backup changed since it was read.")
            revision = current.revision + 1
        await repo.upsert_backup(
            conn,
            account_id=principal.account_id,
            org_id=principal.org_id,
            revision=revision,
            key_version=backup.key_version,
            backup=blob,
            now=now,
        )
        await record(
            conn,
            _event(
                principal,
                Action.CREATE if revision == 1 else Action.UPDATE,
                "key_backup.put",
                principal.account_id,
            ),
            ctx,
            now,
        )
    return BackupStored(revision=revision, key_version=backup.key_version, updated_at=now), revision == 1


async def get_backup(
    rt: Runtime, conn: asyncpg.Connection, principal: Principal, ctx: AuditContext
) -> tuple[KeyBackup, int]:
    """The caller's own key backup and its revision."""
    require(principal.actor, PolicyAction.MANAGE_OWN_KEYS, _own(principal))
    now = rt.clock.now()
    async with tenant_transaction(conn, principal.org_id):
        row = await repo.get_backup(conn, principal.account_id)
        if row is None:
            raise NotFoundError("No key backup is stored.")
        await record(conn, _event(principal, Action.READ, "key_backup.get", principal.account_id), ctx, now)
    return decode_key_backup(row.backup), row.revision
