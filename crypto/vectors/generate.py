"""Write the known-answer vectors: ``python -m crypto.vectors.generate [--check]``.

Every random input is fixed: ``fixed(label, n)`` is the first ``n`` bytes of
BLAKE2b(``"confide test vector: " + label``), fed to the private ``_``-prefixed seams
of :mod:`crypto.client` through :class:`crypto.hazmat.rng.ScriptedRng`. Times, ids,
passphrases and payloads are constants below. Running the generator twice yields the
same bytes; ``--check`` compares with the committed files instead of writing them.
"""

from __future__ import annotations

import base64
import io
import sys
import uuid
from datetime import UTC, datetime

import msgspec

from crypto.client.attachments import _encrypt_attachment
from crypto.client.backup import _create_key_backup, _normalise
from crypto.client.consent import sign_consent
from crypto.client.envelope import _rewrap_for, _seal_envelope
from crypto.client.payload import PAYLOAD_VERSION, AttachmentKey, InnerPayload, encode_payload
from crypto.errors import CryptoError
from crypto.hazmat.padding import pad
from crypto.hazmat.primitives import argon2id
from crypto.hazmat.rng import ScriptedRng
from crypto.public.canonical import (
    FINGERPRINT_DOMAIN,
    backup_associated_data,
    envelope_associated_data,
    envelope_signed_bytes,
)
from crypto.public.consent import ConsentAction, ConsentStatement, GranteeType, consent_signed_bytes
from crypto.public.encoding import CanonicalWriter
from crypto.public.fingerprint import (
    FINGERPRINT_ITERATIONS,
    FINGERPRINT_VERSION,
    bundle_fingerprint,
    safety_number,
    safety_number_qr,
)
from crypto.public.limits import ATTACHMENT_CHUNK_BYTES, BACKUP_MEMLIMIT_MIN, BACKUP_OPSLIMIT_MIN
from crypto.public.wire import Envelope, EnvelopeKind, KeyBackup
from crypto.vectors import VECTOR_DIR
from crypto.vectors._common import (
    CLIENT_RECORD,
    CONVERSATION,
    FORMAT,
    ORGANIZATION,
    PASSPHRASE,
    PASSPHRASE_NFKC,
    Keys,
    at,
    attachment_plaintext,
    fixed,
    make_keys,
    wire_json,
)
from crypto.vectors._negative import (
    REWRAP_KINDS,
    attachment_negatives,
    backup_negatives,
    bundle_negatives,
    consent_negatives,
    envelope_negatives,
    rewrap_negatives,
    rotation_negatives,
)
from crypto.vectors.schema import (
    AttachmentVector,
    AttachmentVectors,
    BackupVector,
    BackupVectors,
    ConsentVector,
    ConsentVectors,
    EnvelopeVector,
    EnvelopeVectors,
    FingerprintVector,
    FingerprintVectors,
    KeyVectors,
    NegativeVectors,
    RewrapVector,
    RewrapVectors,
)

__all__ = ["generate", "main"]


def _text(body: str, attachments: tuple[AttachmentKey, ...] = ()) -> InnerPayload:
    return InnerPayload(
        version=PAYLOAD_VERSION,
        content_type="text/plain; charset=utf-8",
        body=body.encode(),
        attachments=attachments,
    )


def _envelope(
    keys: Keys,
    name: str,
    description: str,
    *,
    sender: str,
    readers: list[str],
    kind: EnvelopeKind,
    context_id: uuid.UUID,
    payload: InnerPayload,
    references: uuid.UUID | None = None,
) -> tuple[EnvelopeVector, Envelope]:
    sender_keys = keys.by_name[sender]
    ordered = sorted({sender, *readers}, key=lambda n: keys.bundle(n).ref.sort_key())
    content_key = fixed(f"{name} content key", 32)
    nonce = fixed(f"{name} nonce", 24)
    ephemeral = [fixed(f"{name} ephemeral {i}", 32) for i in range(len(ordered))]
    item_id = uuid.UUID(bytes=fixed(f"{name} item id", 16), version=4)
    envelope = _seal_envelope(
        sender_keys,
        kind=kind,
        context_id=context_id,
        item_id=item_id,
        payload=payload,
        recipients=[keys.bundle(n) for n in readers],
        references=references,
        rng=ScriptedRng([content_key, nonce, *ephemeral]),
    )
    associated_data = envelope_associated_data(
        kind=kind,
        context_id=context_id,
        item_id=item_id,
        sender=sender_keys.ref,
        references=references,
    )
    vector = EnvelopeVector(
        name=name,
        description=description,
        sender=sender,
        recipients=tuple(ordered),
        kind=kind.value,
        context_id=str(context_id),
        item_id=str(item_id),
        references=None if references is None else str(references),
        payload=encode_payload(payload).decode(),
        padded_payload=pad(encode_payload(payload)).hex(),
        content_key=content_key.hex(),
        nonce=nonce.hex(),
        ephemeral_secrets=tuple(e.hex() for e in ephemeral),
        associated_data=associated_data.hex(),
        key_commitment=envelope.key_commitment.hex(),
        signed_bytes=envelope_signed_bytes(envelope).hex(),
        envelope=wire_json(envelope),
    )
    return vector, envelope


def _attachments() -> tuple[AttachmentVectors, list[AttachmentKey], list[bytes]]:
    vectors: list[AttachmentVector] = []
    refs: list[AttachmentKey] = []
    blobs: list[bytes] = []
    for name, size in (
        ("empty", 0),
        ("small", 1000),
        ("one-full-chunk", ATTACHMENT_CHUNK_BYTES),
        ("two-chunks", ATTACHMENT_CHUNK_BYTES + 100),
    ):
        key, header = fixed(f"attachment {name} key", 32), fixed(f"attachment {name} header", 24)
        attachment_id = uuid.UUID(bytes=fixed(f"attachment {name} id", 16), version=4)
        sink = io.BytesIO()
        ref = _encrypt_attachment(
            io.BytesIO(attachment_plaintext(size)),
            sink,
            attachment_id=attachment_id,
            media_type="application/pdf",
            rng=ScriptedRng([key, header]),
        )
        refs.append(ref)
        blobs.append(sink.getvalue())
        vectors.append(
            AttachmentVector(
                name=name,
                attachment_id=str(attachment_id),
                media_type=ref.media_type,
                size=size,
                key=key.hex(),
                header=header.hex(),
                ciphertext_hash=ref.ciphertext_hash.hex(),
                ciphertext=base64.b64encode(sink.getvalue()).decode(),
                attachment_key=wire_json(ref),
            )
        )
    result = AttachmentVectors(
        format=FORMAT,
        description="secretstream attachments; plaintext byte i is i % 251",
        chunk_bytes=ATTACHMENT_CHUNK_BYTES,
        attachments=tuple(vectors),
    )
    return result, refs, blobs


def _envelopes(keys: Keys, attachment: AttachmentKey) -> tuple[EnvelopeVectors, dict[str, Envelope]]:
    made: dict[str, Envelope] = {}
    vectors: list[EnvelopeVector] = []
    specs: list[tuple[str, str, str, list[str], EnvelopeKind, uuid.UUID, InnerPayload, str]] = [
        (
            "message",
            "client message to a clinician, smallest bucket",
            "alice-v2",
            ["bob-v1"],
            EnvelopeKind.MESSAGE,
            CONVERSATION,
            _text("Hello Dr Bob, can we move Thursday's session?"),
            "",
        ),
        (
            "message-512",
            "message whose payload needs the 512-byte bucket, three recipients",
            "bob-v1",
            ["alice-v2", "carol-v1"],
            EnvelopeKind.MESSAGE,
            CONVERSATION,
            _text("Thursday works. " * 20),
            "",
        ),
        (
            "message-edit",
            "edit referencing the first message",
            "alice-v2",
            ["bob-v1"],
            EnvelopeKind.MESSAGE_EDIT,
            CONVERSATION,
            _text("Hello Dr Bob, can we move Friday's session?"),
            "message",
        ),
        (
            "note",
            "session note to the client and the practice custodian",
            "bob-v1",
            ["alice-v2", "carol-v1"],
            EnvelopeKind.NOTE,
            CLIENT_RECORD,
            _text("Session 4: progress on sleep hygiene."),
            "",
        ),
        (
            "note-custodian",
            "session note by Dr Bob to the client and the organization's custodian key",
            "bob-v1",
            ["alice-v2", "practice-v1"],
            EnvelopeKind.NOTE,
            CLIENT_RECORD,
            _text("Session 5: discussed a safety plan; next session in one week."),
            "",
        ),
        (
            "attachment-key",
            "key and hash of the two-chunks attachment vector",
            "alice-v2",
            ["bob-v1"],
            EnvelopeKind.ATTACHMENT_KEY,
            CONVERSATION,
            InnerPayload(
                version=PAYLOAD_VERSION,
                content_type="application/vnd.confide.attachment",
                body=b"",
                attachments=(attachment,),
            ),
            "",
        ),
    ]
    for name, description, sender, readers, kind, context, payload, refers in specs:
        references = None
        if refers:
            references = made[refers].item_id
        vector, envelope = _envelope(
            keys,
            name,
            description,
            sender=sender,
            readers=readers,
            kind=kind,
            context_id=context,
            payload=payload,
            references=references,
        )
        made[name] = envelope
        vectors.append(vector)
    result = EnvelopeVectors(
        format=FORMAT,
        description="sealed envelopes; every recipient named in 'recipients' can open them",
        envelopes=tuple(vectors),
    )
    return result, made


def _backups(keys: Keys) -> tuple[BackupVectors, dict[str, KeyBackup]]:
    vectors: list[BackupVector] = []
    made: dict[str, KeyBackup] = {}
    for name, identity, passphrase in (
        ("ascii", "alice-v2", PASSPHRASE),
        ("nfkc", "bob-v1", PASSPHRASE_NFKC),
    ):
        salt, nonce = fixed(f"backup {name} salt", 16), fixed(f"backup {name} nonce", 24)
        keys_ = keys.by_name[identity]
        backup = _create_key_backup(
            keys_,
            passphrase,
            opslimit=BACKUP_OPSLIMIT_MIN,
            memlimit=BACKUP_MEMLIMIT_MIN,
            rng=ScriptedRng([salt, nonce]),
        )
        made[name] = backup
        vectors.append(
            BackupVector(
                name=name,
                identity=identity,
                passphrase=passphrase,
                normalized_passphrase=_normalise(passphrase).hex(),
                salt=salt.hex(),
                nonce=nonce.hex(),
                derived_key=argon2id(
                    _normalise(passphrase),
                    salt,
                    opslimit=BACKUP_OPSLIMIT_MIN,
                    memlimit=BACKUP_MEMLIMIT_MIN,
                ).hex(),
                associated_data=backup_associated_data(
                    account_id=backup.account_id,
                    key_version=backup.key_version,
                    opslimit=backup.opslimit,
                    memlimit=backup.memlimit,
                    salt=salt,
                ).hex(),
                plaintext=keys_._backup_plaintext().hex(),
                backup=wire_json(backup),
            )
        )
    result = BackupVectors(
        format=FORMAT,
        description="key backups at the Argon2id floors (opslimit 3, memlimit 64 MiB)",
        backups=tuple(vectors),
    )
    return result, made


def _fingerprints(keys: Keys) -> FingerprintVectors:
    vectors = []
    for a, b in (("alice-v2", "bob-v1"), ("bob-v1", "carol-v1"), ("alice-v1", "alice-v2")):
        first, second = keys.bundle(a), keys.bundle(b)
        identity = (
            CanonicalWriter(FINGERPRINT_DOMAIN)
            .u32(FINGERPRINT_VERSION)
            .uuid(first.account_id)
            .item(first.signing_key)
            .item(first.encryption_key)
            .getvalue()
        )
        vectors.append(
            FingerprintVector(
                a=a,
                b=b,
                identity_bytes_a=identity.hex(),
                fingerprint_a=bundle_fingerprint(first),
                fingerprint_b=bundle_fingerprint(second),
                safety_number=safety_number(first, second),
                qr_payload=safety_number_qr(first, second).hex(),
            )
        )
    return FingerprintVectors(
        format=FORMAT,
        description="per-bundle fingerprints, pair safety numbers and QR payloads",
        iterations=FINGERPRINT_ITERATIONS,
        fingerprints=tuple(vectors),
    )


def _consent(
    keys: Keys,
    *,
    action: ConsentAction,
    consent_id: uuid.UUID,
    grantee_type: GranteeType,
    grantee_id: uuid.UUID,
    scopes: list[str],
    purpose: str,
    valid_from: datetime,
    valid_until: datetime | None,
    issued_at: datetime,
) -> ConsentStatement:
    return sign_consent(
        keys.by_name["alice-v2"],
        action=action,
        consent_id=consent_id,
        organization_id=ORGANIZATION,
        grantee_type=grantee_type,
        grantee_id=grantee_id,
        scopes=scopes,
        purpose=purpose,
        valid_from=valid_from,
        valid_until=valid_until,
        clock=lambda: issued_at,
    )


def _consents(keys: Keys) -> tuple[ConsentVectors, dict[str, ConsentStatement]]:
    grant_id = uuid.UUID(bytes=fixed("consent grant id", 16), version=4)
    bob = keys.bundle("bob-v1").account_id
    until = datetime(2025, 7, 2, 9, 30, tzinfo=UTC)
    made = {
        "grant": _consent(
            keys, action=ConsentAction.GRANT, consent_id=grant_id, grantee_type="clinician",
            grantee_id=bob, scopes=["records.read", "messaging"], purpose="TREAT",
            valid_from=at(2), valid_until=until, issued_at=at(2),
        ),
        "revoke": _consent(
            keys, action=ConsentAction.REVOKE, consent_id=grant_id, grantee_type="clinician",
            grantee_id=bob, scopes=["messaging", "records.read"], purpose="TREAT",
            valid_from=at(2), valid_until=until, issued_at=at(5),
        ),
        "grant-organization": _consent(
            keys, action=ConsentAction.GRANT,
            consent_id=uuid.UUID(bytes=fixed("consent organization grant id", 16), version=4),
            grantee_type="organization", grantee_id=ORGANIZATION, scopes=["emergency_access"],
            purpose="ETREAT", valid_from=at(3), valid_until=None, issued_at=at(3),
        ),
    }  # fmt: skip
    descriptions = {
        "grant": "alice lets Dr Bob message her and read her records until July",
        "revoke": "alice withdraws that grant (same fields, other domain, later issued_at)",
        "grant-organization": "open-ended emergency access for the whole practice",
    }
    vectors = tuple(
        ConsentVector(
            name=name,
            description=descriptions[name],
            identity="alice-v2",
            signed_bytes=consent_signed_bytes(statement).hex(),
            statement=wire_json(statement),
        )
        for name, statement in made.items()
    )
    result = ConsentVectors(
        format=FORMAT,
        description="consent statements signed by alice-v2; each verifies against her bundle",
        consents=vectors,
    )
    return result, made


def _rewraps(
    keys: Keys, envelopes: EnvelopeVectors, made: dict[str, Envelope]
) -> tuple[RewrapVectors, bytes]:
    note = next(vector for vector in envelopes.envelopes if vector.name == "note-custodian")
    ephemeral = fixed("rewrap note-custodian ephemeral", 32)
    wrap = _rewrap_for(
        made[note.name],
        custodian=keys.by_name["practice-v1"],
        sender_bundle=keys.bundle(note.sender),
        context_id=CLIENT_RECORD,
        kinds=REWRAP_KINDS,
        reader_bundle=keys.bundle("dana-v1"),
        rng=ScriptedRng([ephemeral]),
    )
    vector = RewrapVector(
        name="break-glass",
        description="the custodian re-wraps the note's content key for dana (break-glass)",
        envelope=note.name,
        custodian="practice-v1",
        reader="dana-v1",
        context_id=str(CLIENT_RECORD),
        kinds=tuple(sorted(kind.value for kind in REWRAP_KINDS)),
        content_key=note.content_key,
        ephemeral_secret=ephemeral.hex(),
        wrapped_key=wrap.hex(),
    )
    result = RewrapVectors(
        format=FORMAT,
        description="custodian re-wraps: sealed box of an envelope's content key to a reader",
        rewraps=(vector,),
    )
    return result, wrap


def _dump(value: msgspec.Struct) -> str:
    return msgspec.json.format(msgspec.json.encode(value), indent=2).decode() + "\n"


def generate() -> dict[str, str]:
    """Return the content of every vector file, keyed by file name."""
    keys = make_keys()
    attachments, refs, blobs = _attachments()
    envelopes, made = _envelopes(keys, refs[-1])
    backups, backup_objects = _backups(keys)
    consents, consent_objects = _consents(keys)
    rewraps, wrap = _rewraps(keys, envelopes, made)
    return {
        "keys.json": _dump(
            KeyVectors(
                format=FORMAT,
                description="identities with fixed secrets; alice rotates v1 -> v2 -> v3",
                identities=tuple(keys.vectors),
                chain=("alice-v1", "alice-v2", "alice-v3"),
            )
        ),
        "envelopes.json": _dump(envelopes),
        "attachments.json": _dump(attachments),
        "backups.json": _dump(backups),
        "fingerprints.json": _dump(_fingerprints(keys)),
        "consents.json": _dump(consents),
        "rewraps.json": _dump(rewraps),
        "negative.json": _dump(
            NegativeVectors(
                format=FORMAT,
                description="inputs that must be refused; expected_error is this library's class",
                vectors=(
                    *envelope_negatives(keys, made),
                    *bundle_negatives(keys),
                    *rotation_negatives(keys),
                    *backup_negatives(backup_objects),
                    *attachment_negatives((refs[1], blobs[1]), (refs[-1], blobs[-1])),
                    *consent_negatives(keys, consent_objects),
                    *rewrap_negatives(keys, made, wrap),
                ),
            )
        ),
    }


def main(argv: list[str] | None = None) -> int:
    """Write the vector files, or with ``--check`` report whether they are current."""
    args = sys.argv[1:] if argv is None else argv
    check = "--check" in args
    stale = []
    for name, text in generate().items():
        path = VECTOR_DIR / name
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        sys.stderr.write("stale vector files: " + ", ".join(stale) + "\n")
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through main() in the tests
    try:
        raise SystemExit(main())
    except CryptoError as exc:
        raise SystemExit(f"vector generation failed: {exc}") from exc
