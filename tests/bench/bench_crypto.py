"""Envelope throughput against the raw PyNaCl primitives it is built from.

Run: ``python -m tests.bench.bench_crypto`` (or ``python tests/bench/bench_crypto.py``).

Measures, in one run, with best-of-``ROUNDS`` timing:

- seal: ``seal_envelope`` of a 2 KB body for 3 recipients (sender included), against
  the sum of the raw costs — XChaCha20-Poly1305 encryption of the same padded size,
  3 ``SealedBox.encrypt`` and 1 Ed25519 ``sign`` of a message of the signed size;
- open: ``open_envelope`` against Ed25519 verify + ``SealedBox.decrypt`` + AEAD decrypt;
- server: ``decode_envelope`` + ``verify_envelope`` (structure, sizes, signature) per
  second, as the API does on every send.

The ratio is library ops/s divided by raw ops/s (1.0 = no overhead; target >= 0.8).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import nacl.bindings
import nacl.public
import nacl.signing
import nacl.utils

from crypto.client import InnerPayload, generate_identity, open_envelope, seal_envelope
from crypto.public import (
    EnvelopeKind,
    decode_envelope,
    encode,
    envelope_signed_bytes,
    verify_envelope,
)

ROUNDS = 5
ITERATIONS = 300
BODY = bytes(2048)


def _ops_per_second(operation: Callable[[], object], iterations: int = ITERATIONS) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(iterations):
            operation()
        best = min(best, time.perf_counter() - start)
    return iterations / best


def run() -> dict[str, float]:
    """Measure everything once and return the figures (ops/s and ratios)."""
    alice, bob, carol = (generate_identity(uuid.uuid4()) for _ in range(3))
    conversation = uuid.uuid4()
    payload = InnerPayload(version=1, content_type="text/plain; charset=utf-8", body=BODY)
    kinds = {EnvelopeKind.MESSAGE}

    def seal() -> object:
        return seal_envelope(
            alice,
            kind=EnvelopeKind.MESSAGE,
            context_id=conversation,
            item_id=uuid.uuid4(),
            payload=payload,
            recipients=[bob.bundle, carol.bundle],
        )

    envelope = seal_envelope(
        alice,
        kind=EnvelopeKind.MESSAGE,
        context_id=conversation,
        item_id=uuid.uuid4(),
        payload=payload,
        recipients=[bob.bundle, carol.bundle],
    )
    wire = encode(envelope)

    def open_() -> object:
        return open_envelope(
            envelope,
            reader=bob,
            sender_bundle=alice.bundle,
            context_id=conversation,
            kinds=kinds,
        )

    def server_verify() -> None:
        verify_envelope(decode_envelope(wire), alice.bundle)

    # Raw primitives, same sizes: padded plaintext, 3 wrapped keys, signed bytes.
    padded = bytes(len(envelope.ciphertext) - 16)
    signed_size = len(envelope_signed_bytes(envelope))
    signing_key = nacl.signing.SigningKey.generate()
    verify_key = signing_key.verify_key
    receivers = [nacl.public.PrivateKey.generate() for _ in range(3)]
    public_boxes = [nacl.public.SealedBox(r.public_key) for r in receivers]
    private_box = nacl.public.SealedBox(receivers[0])
    key, nonce, ad = nacl.utils.random(32), nacl.utils.random(24), bytes(80)
    message = bytes(signed_size)
    signed = signing_key.sign(message)
    sealed_key = public_boxes[0].encrypt(key)
    ciphertext = nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(padded, ad, nonce, key)

    def raw_seal() -> None:
        nacl.bindings.crypto_aead_xchacha20poly1305_ietf_encrypt(padded, ad, nonce, key)
        for box in public_boxes:
            box.encrypt(key)
        signing_key.sign(message)

    def raw_open() -> None:
        verify_key.verify(signed)
        private_box.decrypt(sealed_key)
        nacl.bindings.crypto_aead_xchacha20poly1305_ietf_decrypt(ciphertext, ad, nonce, key)

    results = {
        "payload_bytes": float(len(BODY)),
        "padded_bytes": float(len(padded)),
        "seal_ops_per_s": _ops_per_second(seal),
        "raw_seal_ops_per_s": _ops_per_second(raw_seal),
        "open_ops_per_s": _ops_per_second(open_),
        "raw_open_ops_per_s": _ops_per_second(raw_open),
        "server_verify_ops_per_s": _ops_per_second(server_verify),
    }
    results["seal_ratio"] = results["seal_ops_per_s"] / results["raw_seal_ops_per_s"]
    results["open_ratio"] = results["open_ops_per_s"] / results["raw_open_ops_per_s"]
    return results


if __name__ == "__main__":
    for name, value in run().items():
        print(f"{name:>26}: {value:,.2f}")
