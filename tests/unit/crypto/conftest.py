"""Shared fixtures: a small cast of identities and a helper to seal between them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest

from crypto.client import IdentityKeys, InnerPayload, generate_identity, seal_envelope
from crypto.public import Envelope, EnvelopeKind, KeyBundle


@dataclass(frozen=True)
class Cast:
    alice: IdentityKeys
    bob: IdentityKeys
    carol: IdentityKeys
    mallory: IdentityKeys
    conversation: uuid.UUID

    def seal(
        self,
        body: bytes = b"hello",
        *,
        sender: IdentityKeys | None = None,
        to: tuple[KeyBundle, ...] | None = None,
        kind: EnvelopeKind = EnvelopeKind.MESSAGE,
        references: uuid.UUID | None = None,
    ) -> Envelope:
        return seal_envelope(
            sender or self.alice,
            kind=kind,
            context_id=self.conversation,
            item_id=uuid.uuid4(),
            payload=text(body),
            recipients=to if to is not None else (self.bob.bundle, self.carol.bundle),
            references=references,
        )


def text(body: bytes) -> InnerPayload:
    return InnerPayload(version=1, content_type="text/plain; charset=utf-8", body=body)


@pytest.fixture(scope="session")
def cast() -> Cast:
    return Cast(
        alice=generate_identity(uuid.uuid4()),
        bob=generate_identity(uuid.uuid4()),
        carol=generate_identity(uuid.uuid4()),
        mallory=generate_identity(uuid.uuid4()),
        conversation=uuid.uuid4(),
    )
