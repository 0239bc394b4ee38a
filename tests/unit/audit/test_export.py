"""The verifiable JSON Lines export: round trips, tampering, pruning, filters."""

from __future__ import annotations

import base64
import random
from collections.abc import Iterator

import msgspec
import pytest

from audit.checkpoint import Checkpoint, sign_checkpoint
from audit.cosignature import cosign_checkpoint
from audit.errors import AuditFormatError, ExportError, ProofError, SignatureError
from audit.export import ExportFilters, ExportRecord, write_jsonl
from audit.leaf import decode_leaf, encode_leaf
from audit.merkle import leaf_hash
from audit.note import NoteSigner
from audit.verify import verify_export
from tests.unit.audit.conftest import ORIGIN, Log, make_event, make_leaves


def _obj(line: bytes) -> dict[str, object]:
    return msgspec.json.decode(line, type=dict[str, object])


def _line(obj: dict[str, object]) -> bytes:
    return msgspec.json.encode(obj) + b"\n"


def _edit(lines: list[bytes], position: int, **changes: object) -> list[bytes]:
    out = list(lines)
    obj = _obj(out[position])
    obj.update(changes)
    out[position] = _line(obj)
    return out


def test_complete_export_verifies(small_log: Log, log_signer: NoteSigner) -> None:
    lines = small_log.export()
    assert _obj(lines[0])["t"] == "header"
    assert _obj(lines[-1]) == {"t": "end", "count": 13}
    summary = verify_export(lines, [log_signer.verifier()])
    assert (summary.count, summary.tree_size, summary.complete) == (13, 13, True)
    assert summary.proofs_checked == 0
    assert summary.origin == ORIGIN
    again = verify_export(iter(lines), [log_signer.verifier()], check_all_proofs=True)
    assert again.proofs_checked == 13
    text = [line.decode() for line in small_log.export(proofs=False)]
    assert verify_export(text, [log_signer.verifier()], require_complete=True).count == 13


def test_leaf_lines_carry_the_exact_leaf_bytes(small_log: Log) -> None:
    lines = small_log.export()
    for index, line in enumerate(lines[1:-1]):
        obj = _obj(line)
        assert obj["i"] == index
        assert base64.b64decode(str(obj["leaf"])) == small_log.leaves[index]


def test_large_complete_export_uses_the_chunked_root(log_signer: NoteSigner) -> None:
    leaves = [i.to_bytes(4, "big") for i in range(20_000)]
    log = Log(leaves, log_signer)
    summary = verify_export(log.export(proofs=False), [log_signer.verifier()])
    assert summary.count == 20_000


def test_empty_log_export(log_signer: NoteSigner) -> None:
    log = Log([], log_signer)
    assert verify_export(log.export(), [log_signer.verifier()]).count == 0


# --- tampering: each attack is caught, naming the index where there is one ---


def test_changed_leaf_bytes(small_log: Log, log_signer: NoteSigner) -> None:
    lines = small_log.export()
    leaf = base64.b64decode(str(_obj(lines[5])["leaf"])).replace(b"api-1", b"api-2")
    tampered = _edit(lines, 5, leaf=base64.b64encode(leaf).decode())
    with pytest.raises(ExportError) as caught:
        verify_export(tampered, [log_signer.verifier()])
    assert caught.value.index == 4


def test_changed_leaf_bytes_and_hash_located_by_proofs(small_log: Log, log_signer: NoteSigner) -> None:
    """The root no longer matches; a second pass over the proofs names the leaf."""
    lines = small_log.export()
    leaf = base64.b64decode(str(_obj(lines[8])["leaf"])).replace(b"api-1", b"api-2")
    h = base64.b64encode(leaf_hash(leaf)).decode()
    tampered = _edit(lines, 8, leaf=base64.b64encode(leaf).decode(), h=h)
    with pytest.raises(ProofError) as caught:
        verify_export(tampered, [log_signer.verifier()])
    assert caught.value.index == 7
    # Streamed once (not re-iterable) or without proofs: caught, without an index.
    with pytest.raises(ExportError) as streamed:
        verify_export(iter(tampered), [log_signer.verifier()])
    assert streamed.value.index is None
    no_proofs = _edit(small_log.export(proofs=False), 8, leaf=base64.b64encode(leaf).decode(), h=h)
    with pytest.raises(ExportError):
        verify_export(no_proofs, [log_signer.verifier()])


def test_deleted_line(small_log: Log, log_signer: NoteSigner) -> None:
    lines = small_log.export()
    tampered = lines[:4] + lines[5:]
    with pytest.raises(ExportError) as caught:
        verify_export(tampered, [log_signer.verifier()])
    assert caught.value.index == 3


def test_deleted_last_line_with_fixed_count(small_log: Log, log_signer: NoteSigner) -> None:
    lines = small_log.export()
    tampered = [*lines[:-2], _line({"t": "end", "count": 12})]
    with pytest.raises(ExportError) as caught:
        verify_export(tampered, [log_signer.verifier()])
    assert caught.value.index == 12


def test_reordered_lines(small_log: Log, log_signer: NoteSigner) -> None:
    lines = small_log.export()
    tampered = list(lines)
    tampered[3], tampered[4] = tampered[4], tampered[3]
    with pytest.raises(ExportError) as caught:
        verify_export(tampered, [log_signer.verifier()])
    assert caught.value.index == 2


def test_truncated_tail(small_log: Log, log_signer: NoteSigner) -> None:
    lines = small_log.export()
    with pytest.raises(ExportError) as caught:
        verify_export(lines[:-3], [log_signer.verifier()])
    assert caught.value.index == 11
    with pytest.raises(AuditFormatError) as cut:
        verify_export([*lines[:-3], lines[-3][:40]], [log_signer.verifier()])
    assert cut.value.index == 11


def test_re_signed_with_another_key(small_log: Log, log_signer: NoteSigner, other_signer: NoteSigner) -> None:
    lines = small_log.export()
    checkpoint = Checkpoint(ORIGIN, 13, small_log.tree.root())
    tampered = _edit(lines, 0, checkpoint=sign_checkpoint(checkpoint, other_signer))
    with pytest.raises(SignatureError):
        verify_export(tampered, [log_signer.verifier()])


def test_wrong_origin(log_signer: NoteSigner) -> None:
    other = NoteSigner("confide.example/audit/staging", bytes(range(32)))
    log = Log(make_leaves(3), other)
    with pytest.raises(SignatureError):
        verify_export(log.export(), [log_signer.verifier(), other.verifier()], origin=ORIGIN)


def test_export_bound_to_an_older_checkpoint_is_caught(small_log: Log, log_signer: NoteSigner) -> None:
    older = Log(make_leaves(13)[:10], log_signer)
    tampered = [older.export()[0], *small_log.export()[1:]]
    with pytest.raises(ExportError) as caught:
        verify_export(tampered, [log_signer.verifier()])
    assert caught.value.index == 10


@pytest.mark.parametrize(
    "case",
    [
        (0, {"t": "leaf"}, AuditFormatError, None),
        (1, {"t": "header"}, AuditFormatError, 0),
        (1, {"extra": 1}, AuditFormatError, 0),
        (1, {"h": "AAAA"}, AuditFormatError, 0),
        (1, {"pruned": True}, AuditFormatError, 0),
        (1, {"proof": None}, AuditFormatError, 0),
        (1, {"i": 13}, ExportError, 0),
        (2, {"i": 0}, ExportError, 0),
        (0, {"format": "confide-audit-export/v2"}, AuditFormatError, None),
    ],
)
def test_malformed_lines(
    small_log: Log,
    log_signer: NoteSigner,
    case: tuple[int, dict[str, object], type[Exception], int | None],
) -> None:
    position, changes, error, index = case
    tampered = _edit(small_log.export(), position, **changes)
    if changes.get("proof", 1) is None:
        tampered[position] = _line({k: v for k, v in _obj(tampered[position]).items() if k != "proof"})
    with pytest.raises(error) as caught:
        verify_export(tampered, [log_signer.verifier()])
    assert getattr(caught.value, "index", None) == index


def test_structural_errors(small_log: Log, log_signer: NoteSigner) -> None:
    lines = small_log.export()
    key = [log_signer.verifier()]
    with pytest.raises(ExportError):
        verify_export([], key)
    with pytest.raises(ExportError):
        verify_export(lines[1:], key)  # no header
    with pytest.raises(ExportError) as second:
        verify_export([*lines[:3], lines[0], *lines[3:]], key)
    assert second.value.index == 2
    with pytest.raises(ExportError):
        verify_export([*lines, lines[-1]], key)  # data after the trailer
    with pytest.raises(AuditFormatError):
        verify_export([lines[0], b"x" * (1 << 18)], key)
    oversized_leaf = base64.b64encode(b"x" * 5000).decode()
    with pytest.raises(AuditFormatError):
        verify_export(_edit(lines, 1, leaf=oversized_leaf), key)


# --- pruning ---


def test_pruned_leaves_keep_every_proof_valid(small_log: Log, log_signer: NoteSigner) -> None:
    small_log.prune(0, 6, 12)
    lines = small_log.export()
    assert _obj(lines[7]).get("pruned") is True
    assert "leaf" not in _obj(lines[7])
    summary = verify_export(lines, [log_signer.verifier()], check_all_proofs=True)
    assert (summary.pruned, summary.proofs_checked) == (3, 13)


def test_pruned_marker_cannot_hide_a_changed_hash(small_log: Log, log_signer: NoteSigner) -> None:
    small_log.prune(6)
    lines = small_log.export()
    tampered = _edit(lines, 7, h=base64.b64encode(leaf_hash(b"forged")).decode())
    with pytest.raises(ProofError) as caught:
        verify_export(tampered, [log_signer.verifier()])
    assert caught.value.index == 6


def test_leaf_without_bytes_or_marker_is_refused(small_log: Log, log_signer: NoteSigner) -> None:
    lines = small_log.export()
    obj = _obj(lines[1])
    del obj["leaf"]
    with pytest.raises(ExportError) as caught:
        verify_export([lines[0], _line(obj), *lines[2:]], [log_signer.verifier()])
    assert caught.value.index == 0


# --- filtered exports ---


def test_filtered_export_checks_every_proof_and_the_filters(small_log: Log, log_signer: NoteSigner) -> None:
    events = [decode_leaf(leaf) for leaf in small_log.leaves if leaf is not None]
    wanted = [i for i, e in enumerate(events) if e.type == "login"]
    filters = ExportFilters(types=("login",))
    lines = small_log.export(indexes=wanted, filters=filters)
    summary = verify_export(lines, [log_signer.verifier()])
    assert (summary.count, summary.complete, summary.proofs_checked) == (len(wanted), False, 4)
    assert summary.filters == filters
    with pytest.raises(ExportError):
        verify_export(lines, [log_signer.verifier()], require_complete=True)
    # An exporter that slips in an event outside the filter is caught.
    sneaky = small_log.export(indexes=[*wanted[:1], 1], filters=filters)
    with pytest.raises(ExportError) as caught:
        verify_export(sneaky, [log_signer.verifier()])
    assert caught.value.index == 1
    # Deleting a line of a filtered export changes the count.
    with pytest.raises(ExportError):
        verify_export([*lines[:1], *lines[2:]], [log_signer.verifier()])


def test_filters_match_each_field() -> None:
    rnd = random.Random(3)
    event = make_event(rnd, 1)
    assert ExportFilters().unfiltered
    assert ExportFilters(since=event.recorded, until="2099-01-01T00:00:00.000000Z").matches(event)
    assert not ExportFilters(until=event.recorded).matches(event)
    assert not ExportFilters(since="2099-01-01T00:00:00.000000Z").matches(event)
    assert ExportFilters(subject=event.subject, actor=event.agent.account).matches(event)
    assert not ExportFilters(subject=event.id).matches(event)
    assert not ExportFilters(actor=event.id).matches(event)
    assert ExportFilters(org=event.agent.org, outcomes=(event.outcome,)).matches(event)
    assert not ExportFilters(org=event.id).matches(event)
    assert not ExportFilters(outcomes=tuple(o for o in (0, 4, 8, 12) if o != event.outcome)).matches(event)
    assert not ExportFilters(org=event.agent.org).unfiltered


def test_filtered_export_needs_proofs_and_bytes(small_log: Log, log_signer: NoteSigner) -> None:
    filters = ExportFilters(types=("login",))
    with pytest.raises(AuditFormatError):
        small_log.export(indexes=[0], filters=filters, proofs=False)
    lines = small_log.export(indexes=[0], filters=filters)
    header = _edit(lines, 0, proofs=False)
    with pytest.raises(ExportError):
        verify_export(header, [log_signer.verifier()])
    small_log.prune(0)
    pruned = small_log.export(indexes=[0], filters=filters)
    with pytest.raises(ExportError) as caught:
        verify_export(pruned, [log_signer.verifier()])
    assert caught.value.index == 0


def test_filtered_leaf_must_decode(log_signer: NoteSigner) -> None:
    log = Log([b"not an audit event"], log_signer)
    lines = log.export(indexes=[0], filters=ExportFilters(types=("login",)))
    with pytest.raises(AuditFormatError) as caught:
        verify_export(lines, [log_signer.verifier()])
    assert caught.value.index == 0


# --- witnesses ---


def test_required_witness(small_log: Log, log_signer: NoteSigner, witness_signer: NoteSigner) -> None:
    lines = small_log.export()
    keys = [log_signer.verifier()]
    with pytest.raises(SignatureError):
        verify_export(lines, keys, witness_keys=[witness_signer.verifier()])
    cosigned = cosign_checkpoint(small_log.note, keys, witness_signer, timestamp=42)
    witnessed = _edit(lines, 0, checkpoint=cosigned)
    summary = verify_export(witnessed, keys, witness_keys=[witness_signer.verifier()])
    assert summary.cosignatures == {"witness.example/w1": 42}


# --- the writer refuses bad input ---


def test_writer_refuses_bad_records(small_log: Log) -> None:
    good = small_log.records()
    bad_sets = [
        [good[1], good[0]],
        [ExportRecord(13, good[0].leaf_hash, good[0].leaf)],
        [ExportRecord(0, good[1].leaf_hash, good[0].leaf)],
        [good[0]],  # proofs requested but the record has none
    ]
    for records in bad_sets:
        with pytest.raises(AuditFormatError):
            list(write_jsonl(records, checkpoint_note=small_log.note, proofs=True))


def test_writer_omits_proofs_when_not_asked(small_log: Log) -> None:
    records = small_log.records()
    lines = list(write_jsonl(records, checkpoint_note=small_log.note, proofs=False))
    assert all("proof" not in _obj(line) for line in lines[1:-1])


def test_event_leaf_fixture_is_canonical() -> None:
    leaf = encode_leaf(make_event(random.Random(1), 1))
    assert encode_leaf(decode_leaf(leaf)) == leaf


class _ChangingExport:
    """Yields a tampered export first, then the original: the locating pass finds nothing."""

    def __init__(self, first: list[bytes], then: list[bytes]) -> None:
        self.passes = [first, then]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.passes.pop(0))


def test_root_mismatch_without_a_failing_proof_is_still_refused(
    small_log: Log, log_signer: NoteSigner
) -> None:
    lines = small_log.export()
    leaf = b"forged"
    tampered = _edit(
        lines,
        3,
        leaf=base64.b64encode(leaf).decode(),
        h=base64.b64encode(leaf_hash(leaf)).decode(),
    )
    with pytest.raises(ExportError) as caught:
        verify_export(_ChangingExport(tampered, lines), [log_signer.verifier()])
    assert caught.value.index is None
