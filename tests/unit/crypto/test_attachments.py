"""Attachments: secretstream in 64 KiB chunks, constant memory, tamper-evident."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.client import (
    AttachmentKey,
    decrypt_attachment,
    encrypt_attachment,
    encrypted_attachment_size,
)
from crypto.client import attachments as attachments_module
from crypto.errors import DecryptionError, FormatError
from crypto.hazmat.secretstream import StreamPusher
from crypto.public.canonical import attachment_associated_data
from crypto.public.limits import ATTACHMENT_CHUNK_BYTES

CHUNK = ATTACHMENT_CHUNK_BYTES


def _encrypt(data: bytes) -> tuple[AttachmentKey, bytes]:
    sink = io.BytesIO()
    key = encrypt_attachment(io.BytesIO(data), sink, attachment_id=uuid.uuid4(), media_type="image/png")
    return key, sink.getvalue()


def _decrypt(blob: bytes, key: AttachmentKey) -> bytes:
    return b"".join(decrypt_attachment(io.BytesIO(blob), key))


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 7])
def test_round_trip_at_chunk_boundaries(size: int) -> None:
    data = bytes(i % 253 for i in range(size))
    key, blob = _encrypt(data)
    assert len(blob) == encrypted_attachment_size(size)
    assert key.size == size
    assert _decrypt(blob, key) == data


@settings(max_examples=15, deadline=None)
@given(
    data=st.binary(max_size=3 * 1024),
    pieces=st.lists(st.integers(1, 700), min_size=1, max_size=8),
)
def test_iterables_of_any_chunking_round_trip(data: bytes, pieces: list[int]) -> None:
    """Input and ciphertext may arrive in arbitrary pieces (network reads)."""

    def split(blob: bytes) -> Iterator[bytes]:
        at, i = 0, 0
        while at < len(blob):
            step = pieces[i % len(pieces)]
            yield blob[at : at + step]
            at, i = at + step, i + 1

    sink = io.BytesIO()
    key = encrypt_attachment(split(data), sink, attachment_id=uuid.uuid4(), media_type="a/b")
    assert b"".join(decrypt_attachment(split(sink.getvalue()), key)) == data


class _Trickle(io.RawIOBase):
    """A file that returns at most 1000 bytes per read, like a socket."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self._data.read(min(size, 1000))


def test_short_reads_from_a_file_are_reassembled() -> None:
    data = bytes(range(256)) * 600
    sink = io.BytesIO()
    key = encrypt_attachment(_Trickle(data), sink, attachment_id=uuid.uuid4(), media_type="x/y")
    assert b"".join(decrypt_attachment(_Trickle(sink.getvalue()), key)) == data


def test_decryption_yields_chunk_by_chunk() -> None:
    """Constant memory: one chunk at a time, never the whole file."""
    data = bytes(3 * CHUNK + 5)
    key, blob = _encrypt(data)
    sizes = [len(part) for part in decrypt_attachment(io.BytesIO(blob), key)]
    assert sizes == [CHUNK, CHUNK, CHUNK, 5]


def _flip(blob: bytes, index: int) -> bytes:
    raw = bytearray(blob)
    raw[index] ^= 1
    return bytes(raw)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: _flip(b, 0),  # header
        lambda b: _flip(b, 30),  # first chunk body
        lambda b: _flip(b, len(b) - 1),  # final chunk tag
        lambda b: b[:-1],  # truncated final chunk
        lambda b: b[: 24 + CHUNK + 17],  # final chunk dropped
        lambda b: b[:24],  # header only
        lambda b: b[:10],  # partial header
        lambda b: b + b"\x00",  # trailing byte
    ],
    ids=["header", "chunk", "tag", "truncated", "dropped-final", "header-only",
         "partial-header", "extended"],
)  # fmt: skip
def test_tampered_blobs_are_refused(mutate: object) -> None:
    key, blob = _encrypt(bytes(CHUNK + 100))
    with pytest.raises(DecryptionError):
        _decrypt(mutate(blob), key)  # type: ignore[operator]


@pytest.mark.parametrize(
    "changes",
    [
        {"attachment_id": uuid.uuid4()},
        {"ciphertext_hash": bytes(32)},
        {"size": 99},
        {"size": 101},
        {"key": bytes(32)},
    ],
    ids=["other-id", "hash", "smaller-size", "larger-size", "wrong-key"],
)
def test_key_record_must_match_the_blob(changes: dict[str, object]) -> None:
    key, blob = _encrypt(bytes(100))
    with pytest.raises(DecryptionError):
        _decrypt(blob, msgspec.structs.replace(key, **changes))


def test_a_short_chunk_before_the_end_is_refused() -> None:
    """Chunking is canonical: a non-final chunk shorter than 64 KiB is refused."""
    key, _ = _encrypt(b"")
    pusher = StreamPusher(key.key)
    ad = attachment_associated_data(key.attachment_id)
    blob = pusher.header + pusher.push(b"short", ad, final=False) + pusher.push(b"", ad, final=True)
    with pytest.raises(DecryptionError):
        _decrypt(blob, msgspec.structs.replace(key, size=5))


def test_oversized_attachment_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(attachments_module, "MAX_ATTACHMENT_BYTES", CHUNK)
    with pytest.raises(FormatError):
        _encrypt(bytes(CHUNK + 1))


@pytest.mark.parametrize(
    "changes",
    [{"version": 2}, {"key": bytes(31)}, {"ciphertext_hash": bytes(1)}, {"size": -1},
     {"media_type": "x" * 256}],
    ids=["version", "key", "hash", "size", "media-type"],
)  # fmt: skip
def test_malformed_attachment_keys_are_refused(changes: dict[str, object]) -> None:
    key, _ = _encrypt(b"")
    with pytest.raises(FormatError):
        msgspec.structs.replace(key, **changes)


def test_attachment_key_repr_hides_the_key() -> None:
    key, _ = _encrypt(b"secret")
    assert key.key.hex() not in repr(key)
    assert str(key.attachment_id) in repr(key)
