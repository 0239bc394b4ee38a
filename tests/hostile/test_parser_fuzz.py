"""B-08: the parsers that take bytes from outside, fuzzed with Hypothesis.

Envelopes, key bundles, key backups, consent statements (crypto.public.wire and
consent), signed notes, checkpoints, verifier keys, audit leaves and JSON Lines audit
exports (audit), data-subject export archives (crypto.client.export) and the server's
HMAC cursors (backend.http.cursors). Each gets arbitrary bytes and structured mutations
of a valid object (a field dropped, retyped or replaced, an unknown field added, bytes
flipped, inserted or cut). The only exceptions allowed are the documented ones
(:class:`crypto.errors.CryptoError`, :class:`audit.errors.VerificationError`,
:class:`backend.errors.InvalidCursorError`), and no input may take more than a generous
liveness bound. Derandomized with a small budget, so ``make test`` stays quick and repeatable.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.checkpoint import Checkpoint, parse_checkpoint, sign_checkpoint, verify_checkpoint
from audit.errors import VerificationError
from audit.export import ExportFilters, records_from_tree, write_jsonl
from audit.leaf import decode_leaf
from audit.merkle import leaf_hash
from audit.note import NoteSigner, VerifierKey, parse_note, verify_note
from audit.proofs import MemoryTree
from audit.verify import verify_checkpoint_consistency, verify_export
from backend.errors import InvalidCursorError
from backend.http.cursors import decode_cursor, encode_cursor
from backend.server_keys import ServerKeys
from crypto.client import InnerPayload, generate_identity, seal_envelope, sign_consent
from crypto.client.export import read_archive
from crypto.errors import CryptoError
from crypto.public import (
    ConsentAction,
    EnvelopeKind,
    decode_bundle,
    decode_envelope,
    encode,
    verify_bundle,
    verify_envelope,
)
from crypto.public.consent import decode_consent, verify_consent
from crypto.public.wire import decode_key_backup
from tests.unit.audit.conftest import make_leaves
from tests.unit.crypto.export_fixtures import ArchiveBuilder

# Small, derandomized budgets: the same inputs every run. A long run (B-08's nightly) sets
# `CONFIDE_PARSER_FUZZ_EXAMPLES=100000`, which also draws new random inputs each time.
_LONG_RUN = "CONFIDE_PARSER_FUZZ_EXAMPLES" in os.environ
FUZZ = settings(
    max_examples=int(os.environ.get("CONFIDE_PARSER_FUZZ_EXAMPLES", "300")),
    deadline=None,
    derandomize=not _LONG_RUN,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
# The liveness bound per input: parsers are linear in their (size-limited) input, so
# anything near this is a hang, whatever the machine's load.
LIVENESS_S = 5.0

ALICE = generate_identity(uuid.UUID(int=1))
BOB = generate_identity(uuid.UUID(int=2))
CONVERSATION = uuid.UUID(int=3)
ORG = uuid.UUID(int=4)
START = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)

ENVELOPE = encode(
    seal_envelope(
        ALICE,
        kind=EnvelopeKind.MESSAGE,
        context_id=CONVERSATION,
        item_id=uuid.UUID(int=5),
        payload=InnerPayload(version=1, content_type="text/plain", body=b"fuzz me"),
        recipients=[ALICE.bundle, BOB.bundle],
    )
)
BUNDLE = encode(ALICE.bundle)
CONSENT = encode(
    sign_consent(
        ALICE,
        action=ConsentAction.GRANT,
        consent_id=uuid.UUID(int=6),
        organization_id=ORG,
        grantee_type="clinician",
        grantee_id=BOB.bundle.account_id,
        scopes=("messaging", "records.read"),
        purpose="TREAT",
        valid_from=START,
        valid_until=START + dt.timedelta(days=30),
        clock=lambda: START,
    )
)
LOG = NoteSigner("fuzz.confide.example/audit/v1", bytes(range(32)))
LOG_KEY = LOG.verifier()
LEAVES = make_leaves(5)
TREE = MemoryTree([leaf_hash(leaf) for leaf in LEAVES])
CHECKPOINT_NOTE = sign_checkpoint(Checkpoint(LOG.name, len(LEAVES), TREE.root()), LOG)
EXPORT_LINES = list(
    write_jsonl(
        records_from_tree(TREE, list(LEAVES), size=len(LEAVES), proofs=True),
        checkpoint_note=CHECKPOINT_NOTE,
        filters=ExportFilters(),
        proofs=True,
    )
)
ARCHIVE_LINES = ArchiveBuilder(ALICE.bundle.account_id).bundle(ALICE).build()
CURSOR_KEYS = ServerKeys(hashlib.sha256(b"fuzz server key").digest())


def _json_values() -> st.SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(min_value=-(2**70), max_value=2**70)
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.text(max_size=40)
        | st.binary(max_size=48).map(lambda b: base64.b64encode(b).decode())
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=8,
    )


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a decoded JSON document."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


@st.composite
def mutated_json(draw: st.DrawFn, valid: bytes) -> bytes:
    """``valid`` with one structural change: a value replaced or removed, or a key added."""
    document = msgspec.json.decode(valid)
    paths = _paths(document)
    path = draw(st.sampled_from(paths))
    parent: Any = document
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    change = draw(st.sampled_from(["replace", "drop", "add", "truncate-string"]))
    if change == "replace":
        parent[last] = draw(_json_values())
    elif change == "drop":
        del parent[last]
    elif change == "add" and isinstance(parent, dict):
        parent[draw(st.text(min_size=1, max_size=12))] = draw(_json_values())
    elif change == "truncate-string" and isinstance(parent[last], str):
        parent[last] = parent[last][: draw(st.integers(0, max(0, len(parent[last]) - 1)))]
    return msgspec.json.encode(document)


@st.composite
def mutated_bytes(draw: st.DrawFn, valid: bytes) -> bytes:
    """``valid`` with bytes flipped, inserted or cut (the raw-bytes view of the same object)."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, max(0, len(data) - 1)))
        match draw(st.sampled_from(["flip", "insert", "delete", "cut"])):
            case "flip" if data:
                data[position] ^= 1 << draw(st.integers(0, 7))
            case "insert":
                data[position:position] = draw(st.binary(min_size=1, max_size=8))
            case "delete" if data:
                del data[position]
            case "cut":
                del data[position:]
            case _:
                pass
    return bytes(data)


def inputs(valid: bytes) -> st.SearchStrategy[bytes]:
    return st.binary(max_size=512) | mutated_json(valid) | mutated_bytes(valid)


def only_documented(
    call: Callable[[], object], allowed: type[Exception] | tuple[type[Exception], ...]
) -> object | None:
    """Run ``call``; the documented errors are fine, anything else fails; so does a hang."""
    started = time.monotonic()
    try:
        return call()
    except allowed:
        return None
    finally:
        assert time.monotonic() - started < LIVENESS_S, "a parser took too long on one input"


def test_the_valid_objects_parse() -> None:
    """The seeds are valid, so mutations start from objects the parsers accept."""
    verify_envelope(decode_envelope(ENVELOPE), ALICE.bundle)
    verify_bundle(decode_bundle(BUNDLE))
    verify_consent(decode_consent(CONSENT), ALICE.bundle)
    parse_checkpoint(parse_note(CHECKPOINT_NOTE).text)
    verify_checkpoint(CHECKPOINT_NOTE, [LOG_KEY])
    assert verify_export(EXPORT_LINES, [LOG_KEY], require_complete=True).count == len(LEAVES)
    read_archive(ARCHIVE_LINES)


@FUZZ
@given(data=inputs(ENVELOPE))
def test_envelope_parser(data: bytes) -> None:
    envelope = only_documented(lambda: decode_envelope(data), CryptoError)
    if envelope is not None:
        only_documented(lambda: verify_envelope(envelope, ALICE.bundle), CryptoError)  # type: ignore[arg-type]


@FUZZ
@given(data=inputs(BUNDLE))
def test_key_bundle_parser(data: bytes) -> None:
    bundle = only_documented(lambda: decode_bundle(data), CryptoError)
    if bundle is not None:
        only_documented(lambda: verify_bundle(bundle), CryptoError)  # type: ignore[arg-type]


@FUZZ
@given(data=inputs(CONSENT))
def test_consent_statement_parser(data: bytes) -> None:
    statement = only_documented(lambda: decode_consent(data), CryptoError)
    if statement is not None:
        only_documented(lambda: verify_consent(statement, ALICE.bundle), CryptoError)  # type: ignore[arg-type]


@FUZZ
@given(data=st.binary(max_size=512) | mutated_bytes(b'{"version":1,"kdf":"argon2id"}'))
def test_key_backup_parser(data: bytes) -> None:
    only_documented(lambda: decode_key_backup(data), CryptoError)


# Any code point, lone surrogates and controls included.
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=200)


@FUZZ
@given(
    data=st.binary(max_size=400) | mutated_bytes(CHECKPOINT_NOTE.encode()),
    text=ANY_TEXT | ANY_TEXT.map(lambda s: CHECKPOINT_NOTE[: len(CHECKPOINT_NOTE) // 2] + s),
)
def test_signed_note_and_checkpoint_parsers(data: bytes, text: str) -> None:
    for note in (data, text):
        only_documented(lambda: parse_note(note), VerificationError)  # noqa: B023 -- called at once
        only_documented(lambda: verify_note(note, [LOG_KEY]), VerificationError)  # noqa: B023
        only_documented(
            lambda: verify_checkpoint(note, [LOG_KEY], origin=LOG.name),  # noqa: B023
            VerificationError,
        )
    for line in (data.decode("utf-8", errors="replace"), text):
        only_documented(lambda: parse_checkpoint(line), VerificationError)  # noqa: B023
        only_documented(lambda: VerifierKey.parse(line), VerificationError)  # noqa: B023


@FUZZ
@given(
    data=st.binary(max_size=400) | mutated_bytes(LEAVES[0]) | mutated_json(LEAVES[1]),
)
def test_audit_leaf_parser(data: bytes) -> None:
    only_documented(lambda: decode_leaf(data), VerificationError)


@st.composite
def mutated_export(draw: st.DrawFn, lines: list[bytes]) -> list[bytes]:
    """An export with one line mutated, dropped, duplicated or swapped, or replaced by junk."""
    changed = list(lines)
    index = draw(st.integers(0, len(changed) - 1))
    match draw(st.sampled_from(["bytes", "json", "drop", "duplicate", "swap", "junk"])):
        case "bytes":
            changed[index] = draw(mutated_bytes(changed[index]))
        case "json":
            changed[index] = draw(mutated_json(changed[index]))
        case "drop":
            del changed[index]
        case "duplicate":
            changed.insert(index, changed[index])
        case "swap":
            other = draw(st.integers(0, len(changed) - 1))
            changed[index], changed[other] = changed[other], changed[index]
        case _:
            changed[index] = draw(st.binary(max_size=200))
    return changed


@FUZZ
@given(lines=mutated_export(EXPORT_LINES))
def test_audit_export_verifier(lines: list[bytes]) -> None:
    only_documented(
        lambda: verify_export(lines, [LOG_KEY], require_complete=True, check_all_proofs=True),
        VerificationError,
    )


@FUZZ
@given(
    old=st.binary(max_size=300) | mutated_bytes(CHECKPOINT_NOTE.encode()),
    proof=st.lists(st.binary(max_size=40), max_size=4),
)
def test_checkpoint_consistency_verifier(old: bytes, proof: list[bytes]) -> None:
    text = old.decode("utf-8", errors="replace")
    only_documented(
        lambda: verify_checkpoint_consistency(text, CHECKPOINT_NOTE, proof, [LOG_KEY]), VerificationError
    )


@FUZZ
@given(lines=mutated_export(ARCHIVE_LINES))
def test_data_subject_export_reader(lines: list[bytes]) -> None:
    only_documented(lambda: read_archive(lines), CryptoError)


@FUZZ
@given(
    cursor=st.text(max_size=40)
    | st.binary(min_size=24, max_size=24).map(lambda b: base64.urlsafe_b64encode(b).decode().rstrip("="))
    | st.integers(0, 2**64 - 1).map(lambda n: encode_cursor(CURSOR_KEYS, "elsewhere", n)),
    scope=st.sampled_from(["conversation:1", "elsewhere"]),
)
def test_cursor_decoder(cursor: str, scope: str) -> None:
    """B-05: a forged, altered or foreign cursor is InvalidCursorError (400), never anything else."""
    position = only_documented(lambda: decode_cursor(CURSOR_KEYS, scope, cursor), InvalidCursorError)
    if position is not None:
        assert scope == "elsewhere", "only a cursor this server made for this listing decodes"


@FUZZ
@given(position=st.integers(0, 2**64 - 1), flip=st.integers(0, 31))
def test_cursor_round_trip_and_tamper(position: int, flip: int) -> None:
    cursor = encode_cursor(CURSOR_KEYS, "conversation:1", position)
    assert decode_cursor(CURSOR_KEYS, "conversation:1", cursor) == position
    tampered = cursor[:flip] + ("A" if cursor[flip] != "A" else "B") + cursor[flip + 1 :]
    with pytest.raises(InvalidCursorError):
        decode_cursor(CURSOR_KEYS, "conversation:1", tampered)


def test_a_cursor_made_under_another_server_key_is_refused() -> None:
    """The tag is keyed: another deployment's (or a rotated key's) cursor names nothing here."""
    other = ServerKeys(b"\x02" * 32)
    for position in (0, 1, 2**63):
        with pytest.raises(InvalidCursorError):
            decode_cursor(CURSOR_KEYS, "conversation:1", encode_cursor(other, "conversation:1", position))
