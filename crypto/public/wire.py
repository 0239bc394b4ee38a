"""Wire formats: the msgspec Structs clients send and the server stores.

Every Struct is frozen, keyword-only and refuses unknown fields; every top-level format
carries a ``version``. ``__post_init__`` checks lengths, ranges, key validity and the
structural rules of ``crypto/SPEC.md``, both when a Struct is decoded and when it is
built in code, so a value of these types is always well formed (its signatures are
checked separately, by :mod:`crypto.public.verify`). Bytes are base64 in JSON.

The server should decode request bodies with the ``decode_*`` functions (raw bytes in),
which enforce size limits before parsing and raise only :class:`CryptoError` subclasses.
"""

from __future__ import annotations

import enum
import itertools
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

import msgspec

from crypto.errors import (
    BackupError,
    CryptoError,
    EnvelopeFormatError,
    FormatError,
    RecipientSetError,
)
from crypto.public.keys import validate_ed25519_public_key, validate_x25519_public_key
from crypto.public.limits import (
    BACKUP_MEMLIMIT_MAX,
    BACKUP_MEMLIMIT_MIN,
    BACKUP_OPSLIMIT_MAX,
    BACKUP_OPSLIMIT_MIN,
    MAX_BACKUP_JSON_BYTES,
    MAX_BUNDLE_JSON_BYTES,
    MAX_ENVELOPE_JSON_BYTES,
    MAX_KEY_VERSION,
    MAX_RECIPIENTS,
    valid_padded_sizes,
)

if TYPE_CHECKING:
    from crypto.public.consent import ConsentStatement

__all__ = [
    "AEAD_NONCE_BYTES",
    "AEAD_TAG_BYTES",
    "ATTACHMENT_VERSION",
    "BACKUP_CIPHERTEXT_BYTES",
    "BACKUP_SALT_BYTES",
    "BACKUP_VERSION",
    "BUNDLE_VERSION",
    "ENVELOPE_VERSION",
    "KEY_COMMITMENT_BYTES",
    "SIGNATURE_BYTES",
    "WRAPPED_KEY_BYTES",
    "Envelope",
    "EnvelopeKind",
    "KeyBackup",
    "KeyBundle",
    "KeyRef",
    "Recipient",
    "decode_bundle",
    "decode_envelope",
    "decode_key_backup",
    "encode",
]

BUNDLE_VERSION = 1
ENVELOPE_VERSION = 1
BACKUP_VERSION = 1
ATTACHMENT_VERSION = 1

SIGNATURE_BYTES = 64
AEAD_NONCE_BYTES = 24
AEAD_TAG_BYTES = 16
KEY_COMMITMENT_BYTES = 32
#: A sealed box of a 32-byte content key: ephemeral public key (32) + MAC (16) + key.
WRAPPED_KEY_BYTES = 32 + 16 + 32
BACKUP_SALT_BYTES = 16
#: X25519 secret key (32) + Ed25519 seed (32) + AEAD tag (16).
BACKUP_CIPHERTEXT_BYTES = 32 + 32 + 16


class EnvelopeKind(enum.Enum):
    """What an envelope carries; each kind has its own signature domain (SPEC.md)."""

    MESSAGE = "message"
    NOTE = "note"
    ATTACHMENT_KEY = "attachment_key"
    MESSAGE_EDIT = "message_edit"
    MESSAGE_DELETE = "message_delete"
    NOTE_AMENDMENT = "note_amendment"

    @property
    def code(self) -> int:
        """The one-byte code of this kind in signed bytes and associated data."""
        return _KIND_CODES[self]

    @property
    def requires_reference(self) -> bool:
        """Whether envelopes of this kind must reference an earlier item."""
        return self in _REFERENCING_KINDS


_KIND_CODES = {
    EnvelopeKind.MESSAGE: 1,
    EnvelopeKind.NOTE: 2,
    EnvelopeKind.ATTACHMENT_KEY: 3,
    EnvelopeKind.MESSAGE_EDIT: 4,
    EnvelopeKind.MESSAGE_DELETE: 5,
    EnvelopeKind.NOTE_AMENDMENT: 6,
}
_REFERENCING_KINDS = frozenset(
    {EnvelopeKind.MESSAGE_EDIT, EnvelopeKind.MESSAGE_DELETE, EnvelopeKind.NOTE_AMENDMENT}
)


def _check_key_version(value: int, error: type[CryptoError]) -> None:
    if not 1 <= value <= MAX_KEY_VERSION:
        raise error("key version out of range")


def _check_length(value: bytes, length: int, what: str, error: type[CryptoError]) -> None:
    if len(value) != length:
        raise error(f"{what} has the wrong length")


class KeyRef(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An account's key at one version: how recipients and senders are named."""

    account_id: uuid.UUID
    key_version: int

    def __post_init__(self) -> None:
        _check_key_version(self.key_version, FormatError)

    def sort_key(self) -> tuple[bytes, int]:
        """The canonical order of key references (account id bytes, then version)."""
        return (self.account_id.bytes, self.key_version)


class KeyBundle(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An account's public keys at one version, self-signed (SPEC.md "Key bundle").

    ``rotation_signature`` is the previous version's signature over this bundle; it is
    absent for version 1 and for a key *reset* (keys lost), which clients must treat as
    a new identity (:func:`crypto.public.verify.verify_rotation` refuses it).
    """

    version: int
    account_id: uuid.UUID
    key_version: int
    encryption_key: bytes
    signing_key: bytes
    created_at: datetime
    self_signature: bytes
    rotation_signature: bytes | None = None

    def __post_init__(self) -> None:
        if self.version != BUNDLE_VERSION:
            raise FormatError("unsupported key bundle version")
        _check_key_version(self.key_version, FormatError)
        _check_created_at(self.created_at)
        validate_x25519_public_key(self.encryption_key)
        validate_ed25519_public_key(self.signing_key)
        _check_length(self.self_signature, SIGNATURE_BYTES, "self signature", FormatError)
        if self.rotation_signature is not None:
            if self.key_version == 1:
                raise FormatError("a first key bundle cannot carry a rotation signature")
            _check_length(self.rotation_signature, SIGNATURE_BYTES, "rotation signature", FormatError)

    @property
    def ref(self) -> KeyRef:
        """This bundle's (account id, key version)."""
        return KeyRef(account_id=self.account_id, key_version=self.key_version)


def _check_created_at(value: datetime) -> None:
    if value.utcoffset() != timedelta(0):
        raise FormatError("created_at must be in UTC")
    if value.microsecond != 0:
        raise FormatError("created_at must be a whole number of seconds")
    if value.timestamp() < 0:
        raise FormatError("created_at must not be before 1970")


class Recipient(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One reader of an envelope: who, at which key version, and the wrapped content key."""

    account_id: uuid.UUID
    key_version: int
    public_key: bytes
    wrapped_key: bytes

    def __post_init__(self) -> None:
        _check_key_version(self.key_version, EnvelopeFormatError)
        validate_x25519_public_key(self.public_key)
        _check_length(self.wrapped_key, WRAPPED_KEY_BYTES, "wrapped key", EnvelopeFormatError)

    @property
    def ref(self) -> KeyRef:
        """This recipient's (account id, key version)."""
        return KeyRef(account_id=self.account_id, key_version=self.key_version)


_VALID_CIPHERTEXT_SIZES = frozenset(size + AEAD_TAG_BYTES for size in valid_padded_sizes())


class Envelope(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An encrypted, signed item (SPEC.md "Envelope").

    Structural rules checked on construction: version 1; a reference exactly for the
    kinds that need one; 1..MAX_RECIPIENTS recipients in strictly increasing
    (account id bytes, key version) order, the sender among them; fixed field lengths;
    a ciphertext whose length is a padding bucket plus the AEAD tag.
    """

    version: int
    kind: EnvelopeKind
    context_id: uuid.UUID
    item_id: uuid.UUID
    sender: KeyRef
    references: uuid.UUID | None = None
    recipients: tuple[Recipient, ...]
    nonce: bytes
    key_commitment: bytes
    ciphertext: bytes
    signature: bytes

    def __post_init__(self) -> None:
        if self.version != ENVELOPE_VERSION:
            raise EnvelopeFormatError("unsupported envelope version")
        if self.kind.requires_reference != (self.references is not None):
            raise EnvelopeFormatError("reference present or missing for this kind")
        if not 1 <= len(self.recipients) <= MAX_RECIPIENTS:
            raise EnvelopeFormatError("recipient count out of range")
        keys = [(r.account_id.bytes, r.key_version) for r in self.recipients]
        if any(a >= b for a, b in itertools.pairwise(keys)):
            raise EnvelopeFormatError("recipients must be sorted and unique")
        if (self.sender.account_id.bytes, self.sender.key_version) not in keys:
            raise RecipientSetError("the sender must be a recipient", missing=[self.sender])
        _check_length(self.nonce, AEAD_NONCE_BYTES, "nonce", EnvelopeFormatError)
        _check_length(self.key_commitment, KEY_COMMITMENT_BYTES, "key commitment", EnvelopeFormatError)
        if len(self.ciphertext) not in _VALID_CIPHERTEXT_SIZES:
            raise EnvelopeFormatError("ciphertext length is not a padding bucket")
        _check_length(self.signature, SIGNATURE_BYTES, "signature", EnvelopeFormatError)

    def recipient(self, ref: KeyRef) -> Recipient | None:
        """Return the recipient entry for ``ref``, or ``None``."""
        for recipient in self.recipients:
            if recipient.account_id == ref.account_id and recipient.key_version == (ref.key_version):
                return recipient
        return None


class KeyBackup(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Private keys of one key version encrypted under a passphrase (SPEC.md "Key backup").

    Argon2id parameters outside [floor, ceiling] are refused with :class:`BackupError`
    on construction and decoding, so a server cannot downgrade them (nor make a client
    allocate gigabytes).
    """

    version: int
    account_id: uuid.UUID
    key_version: int
    kdf: str
    opslimit: int
    memlimit: int
    salt: bytes
    nonce: bytes
    ciphertext: bytes

    def __post_init__(self) -> None:
        if self.version != BACKUP_VERSION:
            raise FormatError("unsupported key backup version")
        if self.kdf != "argon2id13":
            raise BackupError("unsupported key derivation function")
        _check_key_version(self.key_version, FormatError)
        if not BACKUP_OPSLIMIT_MIN <= self.opslimit <= BACKUP_OPSLIMIT_MAX:
            raise BackupError("Argon2id opslimit outside the accepted range")
        if not BACKUP_MEMLIMIT_MIN <= self.memlimit <= BACKUP_MEMLIMIT_MAX:
            raise BackupError("Argon2id memlimit outside the accepted range")
        _check_length(self.salt, BACKUP_SALT_BYTES, "salt", FormatError)
        _check_length(self.nonce, AEAD_NONCE_BYTES, "nonce", FormatError)
        _check_length(self.ciphertext, BACKUP_CIPHERTEXT_BYTES, "ciphertext", FormatError)

    @property
    def ref(self) -> KeyRef:
        """The (account id, key version) whose private keys this backup holds."""
        return KeyRef(account_id=self.account_id, key_version=self.key_version)


_T = TypeVar("_T", bound=msgspec.Struct)

_BUNDLE_DECODER = msgspec.json.Decoder(KeyBundle)
_ENVELOPE_DECODER = msgspec.json.Decoder(Envelope)
_BACKUP_DECODER = msgspec.json.Decoder(KeyBackup)
_ENCODER = msgspec.json.Encoder()


def _decode(
    data: bytes,
    decoder: msgspec.json.Decoder[_T],
    limit: int,
    error: type[FormatError],
) -> _T:
    if len(data) > limit:
        raise error("object exceeds its size limit")
    try:
        return decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        raise error("malformed object or unsupported version") from exc


def decode_bundle(data: bytes) -> KeyBundle:
    """Decode and structurally check a key bundle from JSON (signatures not checked).

    Raises:
        FormatError: malformed JSON, unknown field or version, or too large.
        InvalidKeyError: a public key is unusable.
    """
    return _decode(data, _BUNDLE_DECODER, MAX_BUNDLE_JSON_BYTES, FormatError)


def decode_envelope(data: bytes) -> Envelope:
    """Decode and structurally check an envelope from JSON (signature not checked).

    Raises:
        EnvelopeFormatError: malformed JSON, unknown field or version, broken structure
            or size limit.
        InvalidKeyError: a recipient public key is unusable.
        RecipientSetError: the sender is not among the recipients.
    """
    return _decode(data, _ENVELOPE_DECODER, MAX_ENVELOPE_JSON_BYTES, EnvelopeFormatError)


def decode_key_backup(data: bytes) -> KeyBackup:
    """Decode and check a key backup from JSON, including the Argon2id parameter range.

    Raises:
        FormatError: malformed JSON, unknown field or version, or too large.
        BackupError: KDF or parameters outside the accepted range.
    """
    return _decode(data, _BACKUP_DECODER, MAX_BACKUP_JSON_BYTES, FormatError)


def encode(value: KeyBundle | Envelope | KeyBackup | ConsentStatement) -> bytes:
    """Encode a wire object as JSON (bytes as base64, times as RFC 3339, enums by value)."""
    return _ENCODER.encode(value)
