"""The readable copy of an opened export, as JSON or Markdown.

Message and note content is untrusted text from other people: Markdown output puts it
in fenced code blocks (a fence longer than any run of backticks in it), and escapes
every other value, so a viewer never renders it as markup or HTML.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Final

import msgspec

from crypto.client.export import Fields, OpenedConsentEvent, OpenedExport, OpenedItem

__all__ = ["render_json", "render_markdown"]

# Characters that can open inline markup or HTML; values never start a line.
_SPECIAL: Final = re.compile(r"([\\`*_\[\]<>|~])")
_BACKTICKS: Final = re.compile(r"`+")
_GENERIC_SECTIONS: Final = (
    ("session", "Sessions"),
    ("care_relationship", "Care relationships"),
    ("invite", "Invitations"),
    ("attachment", "Attachments"),
    ("consent", "Consents (current state)"),
    ("emergency_access", "Emergency (break-glass) access"),
    ("disclosure", "Accounting of disclosures"),
    ("erasure_request", "Erasure requests"),
)


def render_json(opened: OpenedExport) -> bytes:
    """The readable copy as indented JSON (bytes as base64, times as RFC 3339)."""
    return msgspec.json.format(msgspec.json.encode(opened), indent=2) + b"\n"


def _escape(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    text = " ".join(str(value).split())  # no line breaks: one value, one line
    return _SPECIAL.sub(r"\\\1", text)


def _fenced(text: str) -> list[str]:
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + "text", *text.splitlines(), fence]


def _fields(fields: Fields) -> str:
    return "; ".join(f"{_escape(name)}: {_escape(value)}" for name, value in fields.items())


def _names(opened: OpenedExport) -> dict[str, str]:
    names: dict[str, str] = {}
    for member in opened.records.get("member", ()):
        names[str(member.get("account_id"))] = str(member.get("name"))
    for account in opened.records.get("account", ()):
        names[str(account.get("id"))] = str(account.get("display_name"))
    return names


def _item_lines(item: OpenedItem, names: dict[str, str]) -> list[str]:
    who = names.get(str(item.sender_id), str(item.sender_id))
    head = f"- {_escape(item.created_at)} — {_escape(who)} ({_escape(item.kind)})"
    if item.references is not None:
        head += f", refers to {_escape(item.references)}"
    lines = [head + f" — id {_escape(item.id)}"]
    if item.status == "unreadable":
        lines.append(f"  - not opened: {_escape(item.reason)}")
        return lines
    if item.text is not None:
        lines.extend("  " + line for line in _fenced(item.text))
    else:
        size = len(item.body or b"")
        lines.append(f"  - {_escape(item.content_type)}, {size} bytes (in the JSON copy, base64)")
    for attachment in item.attachments:
        key = base64.b64encode(attachment.key).decode("ascii")
        lines.append(
            f"  - attachment {_escape(attachment.attachment_id)}: {_escape(attachment.media_type)}, "
            f"{attachment.size} bytes, key {_escape(key)}"
        )
    return lines


def _conversations(opened: OpenedExport, names: dict[str, str]) -> list[str]:
    lines = ["## Conversations", ""]
    conversations = opened.records.get("conversation", ())
    if not conversations:
        lines.append("None.")
    for conversation in conversations:
        conversation_id = str(conversation.get("id"))
        lines += ["", f"### {_escape(conversation.get('kind'))} conversation {_escape(conversation_id)}", ""]
        lines.append(_fields(conversation))
        members = [
            member
            for member in opened.records.get("member", ())
            if str(member.get("conversation_id")) == conversation_id
        ]
        if members:
            lines.append("")
            lines.extend(f"- member: {_fields(member)}" for member in members)
        lines.append("")
        for item in opened.messages:
            if str(item.context_id) == conversation_id:
                lines.extend(_item_lines(item, names))
    return lines


def _consent_lines(events: Iterable[OpenedConsentEvent]) -> list[str]:
    lines = ["## Consent history", ""]
    for event in events:
        lines.append(
            f"- {_escape(event.recorded_at)} — {_escape(event.kind)} of consent {_escape(event.consent_id)}: "
            f"your signature {_escape(event.statement_check)}, server receipt {_escape(event.receipt_check)}"
        )
        if event.statement is not None:
            statement = event.statement
            lines.append(
                f"  - to {_escape(statement.grantee_type)} {_escape(statement.grantee_id)}, scopes "
                f"{_escape(', '.join(statement.scopes))}, purpose {_escape(statement.purpose)}, from "
                f"{_escape(statement.valid_from)} until {_escape(statement.valid_until or 'revoked')}"
            )
    return lines


def render_markdown(opened: OpenedExport) -> str:
    """The readable copy as Markdown: who, keys, conversations, notes, consent, the rest."""
    names = _names(opened)
    server_key = base64.b64encode(opened.server_key).decode("ascii")
    lines = [
        "# Confide export — readable copy",
        "",
        f"- Export {_escape(opened.export_id)}, generated {_escape(opened.generated_at)}",
        f"- Account {_escape(opened.account_id)} ({_escape(opened.role)}), organization "
        f"{_escape(opened.organization_id)}",
        "- The archive's digest, line and record counts and the server's signature were verified.",
        f"- Server key: {_escape(server_key)} (compare with GET /v1/consents/receipt-key)",
        f"- Opened: {_fields(dict(opened.summary))}",
        "",
        "This copy holds your messages and notes in clear text. Keep it on your own device.",
        "",
        "## Account",
        "",
    ]
    lines.extend(f"- {_fields(account)}" for account in opened.records.get("account", ()))
    lines += ["", "## Your keys", ""]
    lines.extend(
        f"- version {key.key_version}: fingerprint {_escape(key.fingerprint)}, chain {_escape(key.chain)}, "
        f"private key {'available' if key.private_key else 'not available'}"
        for key in opened.own_keys
    )
    if opened.key_backup is not None:
        lines.append(f"- key backup: {_fields(opened.key_backup)} (still encrypted in the archive)")
    lines += ["", "## Other people's keys (compare fingerprints in person)", ""]
    lines.extend(
        f"- {_escape(names.get(str(key.account_id), key.account_id))} version {key.key_version}: "
        f"fingerprint {_escape(key.fingerprint)}{'' if key.valid else ' — INVALID'}"
        for key in opened.peer_keys
    )
    lines += ["", *_conversations(opened, names), "", "## Session notes", ""]
    for note in opened.notes:
        lines.extend(_item_lines(note, names))
    lines += ["", *_consent_lines(opened.consent_events)]
    for section, title in _GENERIC_SECTIONS:
        lines += ["", f"## {title}", ""]
        records = opened.records.get(section, ())
        lines.extend(f"- {_fields(record)}" for record in records)
        if not records:
            lines.append("None.")
    return "\n".join(lines) + "\n"
