"""The audit trail: events written in the same transaction as the action."""

from backend.audit_trail.writer import (
    Action,
    AuditContext,
    AuditEvent,
    Outcome,
    record,
)

__all__ = ["Action", "AuditContext", "AuditEvent", "Outcome", "record"]
