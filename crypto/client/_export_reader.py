"""Reading an archive line by line until its trailer has been checked.

Private: use :func:`crypto.client.export.read_archive`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import msgspec

from crypto.client._export_types import Archive, Fields
from crypto.errors import ArchiveError, SignatureError
from crypto.public.export import (
    ArchiveTally,
    ConsentEventRecord,
    KeyBackupRecord,
    KeyBundleRecord,
    Manifest,
    MessageRecord,
    NoteRecord,
    PeerKeyRecord,
    Trailer,
    verify_trailer,
)

__all__ = ["Reader"]


class _Head(msgspec.Struct):
    type: str


_T = TypeVar("_T")
_HEAD = msgspec.json.Decoder(_Head)
_MANIFEST = msgspec.json.Decoder(Manifest)
_TRAILER = msgspec.json.Decoder(Trailer)
_FIELDS = msgspec.json.Decoder(Fields)
_KEY_BUNDLE = msgspec.json.Decoder(KeyBundleRecord)
_KEY_BACKUP = msgspec.json.Decoder(KeyBackupRecord)
_PEER_KEY = msgspec.json.Decoder(PeerKeyRecord)
_MESSAGE = msgspec.json.Decoder(MessageRecord)
_NOTE = msgspec.json.Decoder(NoteRecord)
_CONSENT_EVENT = msgspec.json.Decoder(ConsentEventRecord)


def _decode_line(decoder: msgspec.json.Decoder[_T], line: bytes, number: int) -> _T:
    try:
        return decoder.decode(line)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        # msgspec reports invalid UTF-8 inside a string as UnicodeDecodeError, not DecodeError.
        raise ArchiveError(f"line {number}: malformed record") from exc


class Reader:
    """Collects records line by line; :meth:`finish` checks the trailer."""

    def __init__(self, first: bytes) -> None:
        self.manifest = _decode_line(_MANIFEST, first, 1)
        self.tally = ArchiveTally(self.manifest.sections)
        self.tally.add(first, None)
        self.trailer: Trailer | None = None
        self.key_bundles: list[KeyBundleRecord] = []
        self.key_backups: list[KeyBackupRecord] = []
        self.peer_keys: list[PeerKeyRecord] = []
        self.messages: list[MessageRecord] = []
        self.notes: list[NoteRecord] = []
        self.consent_events: list[ConsentEventRecord] = []
        self.records: dict[str, list[Fields]] = {}
        self.typed: dict[str, Callable[[bytes, int], None]] = {
            "key_bundle": lambda line, n: self.key_bundles.append(_decode_line(_KEY_BUNDLE, line, n)),
            "key_backup": lambda line, n: self.key_backups.append(_decode_line(_KEY_BACKUP, line, n)),
            "peer_key": lambda line, n: self.peer_keys.append(_decode_line(_PEER_KEY, line, n)),
            "message": lambda line, n: self.messages.append(_decode_line(_MESSAGE, line, n)),
            "note": lambda line, n: self.notes.append(_decode_line(_NOTE, line, n)),
            "consent_event": lambda line, n: self.consent_events.append(
                _decode_line(_CONSENT_EVENT, line, n)
            ),
        }

    def add(self, line: bytes, number: int) -> None:
        if self.trailer is not None:
            raise ArchiveError(f"line {number}: data after the trailer")
        try:
            section = _HEAD.decode(line).type
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
            raise ArchiveError(f"line {number}: not a record") from exc
        if section == "trailer":
            self.trailer = _decode_line(_TRAILER, line, number)
            return
        if section not in self.manifest.sections:
            raise ArchiveError(f"line {number}: a record of a section the manifest does not list")
        sink = self.typed.get(section)
        if sink is not None:
            sink(line, number)
        else:
            fields = _FIELDS.decode(line)
            del fields["type"]
            self.records.setdefault(section, []).append(fields)
        self.tally.add(line, section)

    def finish(self, server_key: bytes | None) -> Archive:
        if self.trailer is None:
            raise ArchiveError("the archive is truncated: it has no trailer")
        if server_key is not None and server_key != self.manifest.server_key:
            raise SignatureError("the archive is signed by another server key")
        verify_trailer(self.manifest, self.trailer, self.tally, self.tally.digest())
        if len(self.key_backups) > 1:
            raise ArchiveError("the archive holds more than one key backup")
        return Archive(
            manifest=self.manifest,
            trailer=self.trailer,
            key_bundles=tuple(self.key_bundles),
            key_backup=self.key_backups[0] if self.key_backups else None,
            peer_keys=tuple(self.peer_keys),
            messages=tuple(self.messages),
            notes=tuple(self.notes),
            consent_events=tuple(self.consent_events),
            records={name: tuple(rows) for name, rows in self.records.items()},
        )
