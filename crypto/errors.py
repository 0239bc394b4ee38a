"""Errors raised by :mod:`crypto`.

Every failure of this package is a :class:`CryptoError`. The tree is shallow on purpose::

    CryptoError
    ├── FormatError               malformed bytes/JSON, unknown version, size limit exceeded
    │   ├── EnvelopeFormatError   ... of an envelope specifically
    │   └── ArchiveError          ... of a data-subject export archive, including one
    │                             that is truncated or altered (digest, signature, counts)
    ├── InvalidKeyError           a public key that must never be used (zero, small order,
    │                             non-canonical) or a key of the wrong length
    ├── SignatureError            a signature that does not verify, is malleable, or was
    │                             made by another key than the one expected
    ├── KeyChainError             a key bundle that does not follow from the previous one,
    │                             or is not the key a consent statement names
    ├── RecipientSetError         recipients differ from the expected set (``missing`` and
    │                             ``unexpected`` name the key references)
    ├── ContextError              an authentic envelope presented in the wrong context
    │                             (conversation, kind): replay or re-targeting
    ├── FingerprintMismatchError  a scanned safety-number QR payload does not match
    ├── BackupError               a key backup refused before any decryption (weak or
    │                             absurd KDF parameters, wrong account or version)
    └── DecryptionError           decryption failed; deliberately one opaque error
                                  whatever the cause (wrong key, tampering, bad padding)

Foreign errors (``nacl.exceptions``, ``msgspec``) never escape: they are translated at
one boundary and re-raised ``from`` the original. Messages are fixed strings that never
contain key material, plaintext or personal data.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crypto.public.wire import KeyRef

__all__ = [
    "ArchiveError",
    "BackupError",
    "ContextError",
    "CryptoError",
    "DecryptionError",
    "EnvelopeFormatError",
    "FingerprintMismatchError",
    "FormatError",
    "InvalidKeyError",
    "KeyChainError",
    "RecipientSetError",
    "SignatureError",
]


class CryptoError(Exception):
    """Root of every error raised by the crypto package."""


class FormatError(CryptoError):
    """Bytes or JSON are not a well-formed object of a supported version."""


class EnvelopeFormatError(FormatError):
    """An envelope is malformed, of an unknown version, or exceeds a size limit."""


class ArchiveError(FormatError):
    """An export archive is malformed, truncated, altered, or of an unknown format.

    Raised before anything in the archive is trusted: the digest, line count, record
    counts and the server's signature over them must all hold.
    """


class InvalidKeyError(CryptoError):
    """A public key is unusable: wrong length, all-zero, small order or non-canonical."""


class SignatureError(CryptoError):
    """A signature is invalid, malleable (non-canonical), or by an unexpected key."""


class KeyChainError(CryptoError):
    """A key bundle is not a valid successor of the previous bundle of the account.

    Also raised when a consent statement is checked against a bundle other than the
    (account, key version) it names.
    """


class RecipientSetError(CryptoError):
    """The recipients of an envelope differ from the set that was expected.

    Attributes:
        missing: key references that should have been recipients and are not.
        unexpected: key references that are recipients but should not be (including a
            recipient whose public key does not match the expected bundle).
    """

    def __init__(
        self,
        message: str,
        *,
        missing: Iterable[KeyRef] = (),
        unexpected: Iterable[KeyRef] = (),
    ) -> None:
        super().__init__(message)
        self.missing: frozenset[KeyRef] = frozenset(missing)
        self.unexpected: frozenset[KeyRef] = frozenset(unexpected)


class ContextError(CryptoError):
    """An authentic envelope was presented for another context or kind than expected."""


class FingerprintMismatchError(CryptoError):
    """A safety-number QR payload does not match the two key bundles compared."""


class BackupError(CryptoError):
    """A key backup was refused before decryption (parameters, account or version)."""


class DecryptionError(CryptoError):
    """Decryption failed. One opaque error whatever the cause, by design."""
