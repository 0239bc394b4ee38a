r"""C2SP signed notes (https://c2sp.org/signed-note@v1.0.0) with Ed25519 keys.

A note is UTF-8 text ending in a newline, a blank line, then signature lines
``— <key name> <base64(key ID || signature)>`` (U+2014 em dash). Keys:

* type ``0x01``: Ed25519 over the note text (log checkpoints);
* type ``0x04``: timestamped Ed25519 cosignature (https://c2sp.org/tlog-cosignature@v1.0.0),
  over ``cosignature/v1\ntime <t>\n`` followed by the note text; the signature is
  ``u64 timestamp || Ed25519 signature``.

Key ID = ``SHA-256(name || 0x0A || type || public key)[:4]``. Verifier keys are
written ``<name>+<hex key ID>+<base64(type || public key)>`` (vkeys); signer keys
as golang.org/x/mod/sumdb/note does, ``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>``.

Per the spec, signatures from unknown keys are ignored (unless the caller asks to
refuse them), a failing signature from a known key rejects the whole note, and a
note with no verified known signature is rejected.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Sequence
from typing import Final, Literal

import msgspec
import nacl.exceptions
import nacl.signing

from audit.errors import AuditFormatError, SignatureError

__all__ = [
    "COSIGNATURE_V1",
    "ED25519",
    "EM_DASH",
    "MAX_NOTE_BYTES",
    "MAX_SIGNATURES",
    "NoteSignature",
    "NoteSigner",
    "SignedNote",
    "VerifierKey",
    "add_signature",
    "format_note",
    "generate_signer",
    "key_id",
    "parse_note",
    "verify_note",
]

ED25519: Final = 0x01
COSIGNATURE_V1: Final = 0x04
EM_DASH: Final = "\u2014"
MAX_SIGNATURES: Final = 100
MAX_NOTE_BYTES: Final = 1 << 16
_COSIG_HEADER: Final = "cosignature/v1\n"
_SigType = Literal[1, 4]


def key_id(name: str, sig_type: int, public_key: bytes) -> bytes:
    """Return the 4-byte key ID ``SHA-256(name || 0x0A || type || public key)[:4]``."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([sig_type]) + public_key).digest()[:4]


def _check_name(name: str) -> None:
    if not name or any(ch.isspace() or ch == "+" for ch in name) or not name.isprintable():
        raise AuditFormatError("key name must be non-empty, without spaces or '+'")


def _b64decode(text: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise AuditFormatError("invalid base64") from exc
    if base64.b64encode(raw).decode() != text:
        raise AuditFormatError("non-canonical base64")
    return raw


def _cosigned_message(text: str, timestamp: int) -> bytes:
    return f"{_COSIG_HEADER}time {timestamp}\n{text}".encode()


class VerifierKey(msgspec.Struct, frozen=True):
    """A public key that verifies note signatures of one type under one name."""

    name: str
    sig_type: _SigType
    public_key: bytes

    def __post_init__(self) -> None:
        """Validate the name and key length."""
        _check_name(self.name)
        if len(self.public_key) != 32:
            raise AuditFormatError("an Ed25519 public key is 32 bytes")

    @property
    def key_id(self) -> bytes:
        """The 4-byte key ID."""
        return key_id(self.name, self.sig_type, self.public_key)

    @classmethod
    def parse(cls, vkey: str) -> VerifierKey:
        """Parse ``<name>+<hex key ID>+<base64(type || key)>`` (types 0x01 and 0x04).

        Raises:
            AuditFormatError: Malformed, unsupported type, or the key ID does not match.
        """
        parts = vkey.split("+", 2)
        if len(parts) != 3 or len(parts[1]) != 8 or parts[1] != parts[1].lower():
            raise AuditFormatError("verifier key must be <name>+<8 hex>+<base64>")
        name, hex_id, material = parts
        try:
            wanted_id = bytes.fromhex(hex_id)
        except ValueError as exc:
            raise AuditFormatError("verifier key ID is not hex") from exc
        raw = _b64decode(material)
        if len(raw) != 33 or raw[0] not in (ED25519, COSIGNATURE_V1):
            raise AuditFormatError("verifier key must be an Ed25519 key of type 0x01 or 0x04")
        sig_type: _SigType = ED25519 if raw[0] == ED25519 else COSIGNATURE_V1
        key = cls(name, sig_type, raw[1:])
        if key.key_id != wanted_id:
            raise AuditFormatError("verifier key ID does not match the key")
        return key

    def __str__(self) -> str:
        """Return the vkey string."""
        material = base64.b64encode(bytes([self.sig_type]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{material}"

    def verify(self, text: str, signature: bytes) -> int | None:
        """Verify ``signature`` (without the key ID) over the note ``text``.

        Returns:
            The cosignature timestamp for type 0x04, ``None`` for type 0x01.

        Raises:
            SignatureError: The signature does not verify.
        """
        timestamp: int | None = None
        if self.sig_type == COSIGNATURE_V1:
            if len(signature) != 72:
                raise SignatureError(f"cosignature from {self.name} has the wrong length")
            (timestamp,) = struct.unpack(">Q", signature[:8])
            message, signature = _cosigned_message(text, timestamp), signature[8:]
            if timestamp >= 1 << 63:
                raise SignatureError(f"cosignature from {self.name} has an invalid time")
        else:
            message = text.encode()
        try:
            nacl.signing.VerifyKey(self.public_key).verify(message, signature)
        except (nacl.exceptions.BadSignatureError, ValueError, TypeError) as exc:
            raise SignatureError(f"signature from {self.name} does not verify") from exc
        return timestamp


class NoteSigner:
    """An Ed25519 private key that signs notes (0x01) or cosigns checkpoints (0x04)."""

    __slots__ = ("_key", "name", "sig_type")

    def __init__(self, name: str, seed: bytes, sig_type: _SigType = ED25519) -> None:
        _check_name(name)
        if len(seed) != 32:
            raise AuditFormatError("an Ed25519 seed is 32 bytes")
        self.name = name
        self.sig_type: _SigType = sig_type
        self._key = nacl.signing.SigningKey(seed)

    @classmethod
    def parse(cls, skey: str, sig_type: _SigType = ED25519) -> NoteSigner:
        """Parse ``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>``.

        The same secret can sign as a log (0x01) or as a witness (``sig_type=0x04``).

        Raises:
            AuditFormatError: The key is malformed or its key ID does not match.
        """
        parts = skey.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise AuditFormatError("signer key must be PRIVATE+KEY+<name>+<id>+<base64>")
        _, _, name, hex_id, material = parts
        raw = _b64decode(material)
        if len(raw) != 33 or raw[0] != ED25519:
            raise AuditFormatError("signer key must hold an Ed25519 seed")
        signer = cls(name, raw[1:], ED25519)
        if hex_id != signer.verifier().key_id.hex():
            raise AuditFormatError("signer key ID does not match the key")
        return cls(name, raw[1:], sig_type)

    def __str__(self) -> str:
        """Return the secret key string (handle as a secret)."""
        seed = bytes(self._key)
        material = base64.b64encode(bytes([ED25519]) + seed).decode()
        plain_id = key_id(self.name, ED25519, self.public_key)
        return f"PRIVATE+KEY+{self.name}+{plain_id.hex()}+{material}"

    def __repr__(self) -> str:
        """Name the key without revealing it."""
        return f"NoteSigner(name={self.name!r}, sig_type={self.sig_type})"

    @property
    def public_key(self) -> bytes:
        """The 32-byte Ed25519 public key."""
        return bytes(self._key.verify_key.encode())

    def verifier(self) -> VerifierKey:
        """The matching verifier key."""
        return VerifierKey(self.name, self.sig_type, self.public_key)

    def sign(self, text: str, *, timestamp: int | None = None) -> NoteSignature:
        """Sign note text; cosigners (0x04) need a POSIX ``timestamp``.

        Raises:
            AuditFormatError: A timestamp is missing, out of range, or given to a 0x01 key.
        """
        if self.sig_type == COSIGNATURE_V1:
            if timestamp is None or not 0 <= timestamp < 1 << 63:
                raise AuditFormatError("a cosignature needs a timestamp in [0, 2**63)")
            sig = bytes(self._key.sign(_cosigned_message(text, timestamp)).signature)
            sig = struct.pack(">Q", timestamp) + sig
        else:
            if timestamp is not None:
                raise AuditFormatError("only cosignatures carry a timestamp")
            sig = bytes(self._key.sign(text.encode()).signature)
        return NoteSignature(self.name, self.verifier().key_id, sig)


def generate_signer(name: str, sig_type: _SigType = ED25519) -> NoteSigner:
    """Generate a new random Ed25519 signer."""
    return NoteSigner(name, bytes(nacl.signing.SigningKey.generate()), sig_type)


class NoteSignature(msgspec.Struct, frozen=True):
    """One signature line: key name, 4-byte key ID, signature bytes."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        """The signature line, with its newline."""
        return f"{EM_DASH} {self.name} {base64.b64encode(self.key_id + self.signature).decode()}\n"


class SignedNote(msgspec.Struct, frozen=True):
    """A parsed note: its text (ending in a newline) and its signatures, in order."""

    text: str
    signatures: tuple[NoteSignature, ...]


def _check_text_chars(note: str) -> None:
    if any(ch < " " and ch != "\n" for ch in note):
        raise AuditFormatError("note contains control characters")


def parse_note(note: str | bytes) -> SignedNote:
    """Parse a signed note without verifying it.

    Raises:
        AuditFormatError: Not UTF-8, control characters, too large, no blank line before
            the signatures, a malformed signature line, or too many signatures.
    """
    if isinstance(note, bytes):
        if len(note) > MAX_NOTE_BYTES:
            raise AuditFormatError("note is too large")
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AuditFormatError("note is not UTF-8") from exc
    if len(note.encode("utf-8", "surrogatepass")) > MAX_NOTE_BYTES:
        raise AuditFormatError("note is too large")
    _check_text_chars(note)
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise AuditFormatError("note has no signature block")
    text, block = note[: split + 1], note[split + 2 :]
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise AuditFormatError("note has too many signatures")
    signatures: list[NoteSignature] = []
    for line in lines:
        prefix = f"{EM_DASH} "
        fields = line[len(prefix) :].split(" ")
        if not line.startswith(prefix) or len(fields) != 2:
            raise AuditFormatError("malformed signature line")
        name, encoded = fields
        _check_name(name)
        raw = _b64decode(encoded)
        if len(raw) < 5:
            raise AuditFormatError("signature is too short")
        signatures.append(NoteSignature(name, raw[:4], raw[4:]))
    return SignedNote(text, tuple(signatures))


def format_note(note: SignedNote) -> str:
    """Serialise a note: text, blank line, one line per signature.

    Raises:
        AuditFormatError: The text does not end in a newline or there is no signature.
    """
    if not note.text.endswith("\n") or not note.signatures:
        raise AuditFormatError("a note needs text ending in a newline and a signature")
    _check_text_chars(note.text)
    return note.text + "\n" + "".join(sig.line() for sig in note.signatures)


def add_signature(note: str, signer: NoteSigner, *, timestamp: int | None = None) -> str:
    """Append ``signer``'s signature to an existing note (e.g. a witness cosignature)."""
    parsed = parse_note(note)
    sig = signer.sign(parsed.text, timestamp=timestamp)
    return format_note(SignedNote(parsed.text, (*parsed.signatures, sig)))


def verify_note(
    note: str | bytes, keys: Sequence[VerifierKey], *, unsafe_allow_unknown: bool = True
) -> tuple[SignedNote, dict[VerifierKey, int | None]]:
    """Verify a note against trusted keys.

    Args:
        note: The signed note.
        keys: Trusted keys (any mix of 0x01 and 0x04).
        unsafe_allow_unknown: Ignore signatures from keys not in ``keys`` (the spec's
            rule, needed to tolerate witnesses and key rotation). ``False`` refuses them.

    Returns:
        The parsed note and, for each key whose signature verified, its cosignature
        timestamp (or ``None`` for 0x01 keys).

    Raises:
        AuditFormatError: The note is malformed, or a known key signed twice.
        SignatureError: A known key's signature fails, no known key signed, or an unknown
            key signed and unknown keys are refused.
    """
    parsed = parse_note(note)
    by_id = {(key.name, key.key_id): key for key in keys}
    verified: dict[VerifierKey, int | None] = {}
    for sig in parsed.signatures:
        key = by_id.get((sig.name, sig.key_id))
        if key is None:
            if not unsafe_allow_unknown:
                raise SignatureError(f"note is signed by an unknown key {sig.name}")
            continue
        if key in verified:
            raise AuditFormatError(f"note has two signatures from {key.name}")
        verified[key] = key.verify(parsed.text, sig.signature)
    if not verified:
        raise SignatureError("note has no signature from a trusted key")
    return parsed, verified
