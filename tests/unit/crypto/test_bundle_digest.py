"""The key log's bundle digest (SPEC.md section 16): the whole bundle, signatures included."""

from __future__ import annotations

import hashlib
import struct
import uuid

import msgspec

from crypto.client import generate_identity, rotate_identity
from crypto.public import KeyBundle, bundle_digest, bundle_log_bytes


def _item(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _by_hand(bundle: KeyBundle) -> bytes:
    """The layout written out from the spec, independently of CanonicalWriter."""
    return (
        _item(b"confide/v1/key-log-bundle")
        + _item(struct.pack(">I", 1))
        + _item(bundle.account_id.bytes)
        + _item(struct.pack(">I", bundle.key_version))
        + _item(bundle.encryption_key)
        + _item(bundle.signing_key)
        + _item(struct.pack(">Q", int(bundle.created_at.timestamp())))
        + _item(bundle.self_signature)
        + _item(bundle.rotation_signature or b"")
    )


def test_digest_is_sha256_of_the_documented_layout() -> None:
    first = generate_identity(uuid.uuid4())
    second = rotate_identity(first)
    for bundle in (first.bundle, second.bundle):
        assert bundle_log_bytes(bundle) == _by_hand(bundle)
        assert bundle_digest(bundle) == hashlib.sha256(_by_hand(bundle)).digest()
    assert bundle_digest(first.bundle) != bundle_digest(second.bundle)


def test_digest_commits_to_the_signatures() -> None:
    """A server that strips a rotation signature (a 'reset') logs another digest."""
    second = rotate_identity(generate_identity(uuid.uuid4())).bundle
    stripped = msgspec.structs.replace(second, rotation_signature=None)
    assert bundle_digest(stripped) != bundle_digest(second)
