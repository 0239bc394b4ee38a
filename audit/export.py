"""The verifiable JSON Lines export (format ``confide-audit-export/v1``).

One JSON object per line, produced and consumed as a stream (constant memory)::

    {"t":"header","format":"confide-audit-export/v1","checkpoint":"<signed note>",
     "filters":{...},"proofs":true}
    {"t":"leaf","i":0,"h":"<b64 leaf hash>","leaf":"<b64 exact leaf bytes>","proof":[...]}
    {"t":"leaf","i":1,"h":"<b64 leaf hash>","pruned":true,"proof":[...]}
    {"t":"end","count":2}

The signed checkpoint comes first so a verifier can check every line as it reads it
and the exporter can stream from a database cursor: it picks the latest checkpoint,
then emits leaves with ``index < size`` in index order, each with its inclusion proof
to that checkpoint. ``leaf`` is base64 of the exact bytes that were hashed; a leaf
whose content was pruned for retention carries ``"pruned":true`` and only its hash.
An unfiltered export holds every index ``0 .. size-1`` and may omit proofs (the
verifier recomputes the root); a filtered export must carry proofs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Annotated, Final, Literal

import msgspec

from audit.checkpoint import parse_checkpoint
from audit.errors import AuditFormatError
from audit.leaf import AuditEvent
from audit.merkle import NodeID, leaf_hash
from audit.note import parse_note
from audit.proofs import MemoryTree

__all__ = [
    "EXPORT_FORMAT",
    "MAX_LINE_BYTES",
    "ExportFilters",
    "ExportHeader",
    "ExportLeaf",
    "ExportRecord",
    "ExportTrailer",
    "records_from_tree",
    "write_jsonl",
]

EXPORT_FORMAT: Final = "confide-audit-export/v1"
MAX_LINE_BYTES: Final = 1 << 17

_Time = Annotated[str, msgspec.Meta(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")]
_Code = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_.\-]{0,63}$")]


class ExportFilters(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """What an export selected. All ``None`` means unfiltered (every index present).

    Attributes:
        since: Events recorded at or after this time (leaf ``recorded`` format).
        until: Events recorded strictly before this time.
        subject: Events about this client.
        actor: Events by this account.
        types: Events of these type codes.
        org: Events of this organization (the agent's ``org``).
        outcomes: Events with these outcome codes.
    """

    since: _Time | None = None
    until: _Time | None = None
    subject: uuid.UUID | None = None
    actor: uuid.UUID | None = None
    types: tuple[_Code, ...] | None = None
    org: uuid.UUID | None = None
    outcomes: tuple[Literal[0, 4, 8, 12], ...] | None = None

    @property
    def unfiltered(self) -> bool:
        """Whether no filter is set (the export must then be complete)."""
        return self == _NO_FILTERS

    def matches(self, event: AuditEvent) -> bool:
        """Whether ``event`` is selected by these filters."""
        return (
            (self.since is None or event.recorded >= self.since)
            and (self.until is None or event.recorded < self.until)
            and (self.subject is None or event.subject == self.subject)
            and (self.actor is None or event.agent.account == self.actor)
            and (self.types is None or event.type in self.types)
            and (self.org is None or event.agent.org == self.org)
            and (self.outcomes is None or event.outcome in self.outcomes)
        )


_NO_FILTERS: Final = ExportFilters()


class ExportHeader(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="t", tag="header"):
    """First line: format version, signed checkpoint note, filters, whether proofs follow."""

    format: Literal["confide-audit-export/v1"]
    checkpoint: str
    filters: ExportFilters
    proofs: bool


class ExportLeaf(
    msgspec.Struct,
    frozen=True,
    forbid_unknown_fields=True,
    omit_defaults=True,
    tag_field="t",
    tag="leaf",
):
    """One event: index, leaf hash, exact leaf bytes (or the pruned marker), proof."""

    i: int
    h: bytes
    leaf: bytes | None = None
    pruned: bool = False
    proof: list[bytes] | None = None


class ExportTrailer(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="t", tag="end"):
    """Last line: the number of leaf lines (detects a truncated tail)."""

    count: int


class ExportRecord(msgspec.Struct, frozen=True):
    """What the exporter feeds the writer for each selected leaf (e.g. from a DB row).

    Attributes:
        index: Leaf index in the log.
        leaf_hash: Stored leaf hash.
        leaf: Exact stored leaf bytes, or ``None`` if pruned.
        proof: Inclusion proof to the export's checkpoint, when the export carries proofs.
    """

    index: int
    leaf_hash: bytes
    leaf: bytes | None
    proof: Sequence[bytes] | None = None


_encoder: Final = msgspec.json.Encoder()


def write_jsonl(
    records: Iterable[ExportRecord],
    *,
    checkpoint_note: str,
    filters: ExportFilters = _NO_FILTERS,
    proofs: bool = True,
) -> Iterator[bytes]:
    """Yield the export's lines (each ending in a newline) as records stream in.

    Raises:
        AuditFormatError: A filtered export without proofs, records out of order or
            beyond the checkpoint, a missing proof, or a leaf that does not match its
            hash (nothing is emitted for the bad record).
    """
    size = parse_checkpoint(parse_note(checkpoint_note).text).size
    if not filters.unfiltered and not proofs:
        raise AuditFormatError("a filtered export must carry inclusion proofs")
    header = ExportHeader(EXPORT_FORMAT, checkpoint_note, filters, proofs)
    yield _encoder.encode(header) + b"\n"
    count, previous = 0, -1
    for record in records:
        if not previous < record.index < size:
            raise AuditFormatError("export records must be in index order within the checkpoint")
        if record.leaf is not None and leaf_hash(record.leaf) != record.leaf_hash:
            raise AuditFormatError("stored leaf does not match its hash", index=record.index)
        if proofs and record.proof is None:
            raise AuditFormatError("export record lacks its proof", index=record.index)
        line = ExportLeaf(
            record.index,
            record.leaf_hash,
            record.leaf,
            record.leaf is None,
            list(record.proof) if proofs and record.proof is not None else None,
        )
        yield _encoder.encode(line) + b"\n"
        count += 1
        previous = record.index
    yield _encoder.encode(ExportTrailer(count)) + b"\n"


def records_from_tree(
    tree: MemoryTree,
    leaves: Sequence[bytes | None],
    *,
    size: int,
    indexes: Iterable[int] | None = None,
    proofs: bool = True,
) -> Iterator[ExportRecord]:
    """Yield export records from an in-memory tree (tests, tools, benchmarks).

    ``leaves[i]`` is ``None`` for a pruned leaf; the tree holds every leaf hash.
    """
    for index in range(size) if indexes is None else indexes:
        (hash_value,) = tree.node_hashes([NodeID(0, index)])
        proof = tree.inclusion_proof(index, size) if proofs else None
        yield ExportRecord(index, hash_value, leaves[index], proof)
