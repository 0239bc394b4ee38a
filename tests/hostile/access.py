"""Who may call what: the expectation table of the authorization matrix, by operation id.

Roles are those of :class:`tests.hostile.world.Org`: ``admin``, ``clinician`` (treats
the client, with their consent), ``colleague`` (a clinician without consent or care
relationship), ``compliance_officer``, ``client`` (consent active) and
``revoked_client`` (consent revoked). A role not named in an operation's row gets the
row's denial status: ``403`` when the role may never do this, or knows the object but may
not do this to it; ``404`` when the object is not visible to it (its existence does not
leak: the answer is the one an unknown id gets). On a client's record and notes (A-02)
only the client's circle gets 403s: the client themselves, and the clinician who treats
them; everyone else gets 404.
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("admin", "clinician", "colleague", "compliance_officer", "client", "revoked_client")
EVERYONE = frozenset(ROLES)
CLIENTS = frozenset({"client", "revoked_client"})
CLINICIANS = frozenset({"clinician", "colleague"})
STAFF = EVERYONE - CLIENTS


@dataclass(frozen=True)
class Row:
    """Roles allowed (status when allowed), and what the others get."""

    allowed: frozenset[str]
    deny: int = 403
    # Per-role denial statuses that differ from ``deny`` (for example 404 for a client who
    # is not the one concerned, 403 for staff who may never do this).
    deny_as: tuple[tuple[str, int], ...] = ()

    def expected_denial(self, role: str) -> int:
        return dict(self.deny_as).get(role, self.deny)


def only(*roles: str, deny: int = 403, **deny_as: int) -> Row:
    return Row(frozenset(roles), deny, tuple(sorted(deny_as.items())))


PUBLIC = frozenset(
    {
        "healthLive",
        "healthReady",
        "login",
        "redeemInvite",
        "getAuditLogKey",
        "getKeyLogKey",
        "getConsentReceiptKey",
        "getErasureOutcome",
    }
)

# Operations on one's own account: every role may, on its own account only.
SELF = Row(EVERYONE)

TABLE: dict[str, Row] = {
    # Own account and session.
    "getMe": SELF,
    "changePassword": SELF,
    "enrollTotp": SELF,
    "confirmTotp": SELF,
    "logout": SELF,
    "logoutAll": SELF,
    "exportMyData": SELF,
    "getKeyBackup": SELF,
    "putKeyBackup": SELF,
    "publishKeyBundle": SELF,
    "revokeKeyBundle": SELF,
    "streamEvents": SELF,
    # Onboarding.
    "createStaffAccount": only("admin"),
    # Access changes (A-06b, A-10): admins only; the recipes are no-ops on the admin's own account.
    "setAccountRole": only("admin"),
    "setAccountStatus": only("admin"),
    "createInvite": only("clinician", "colleague"),
    # Key directory: everyone in the organization reads everyone's public keys.
    "listAccountKeys": Row(EVERYONE),
    # Key transparency: one key log for every organization, hashes only.
    "getKeyLogCheckpoint": Row(EVERYONE),
    "getKeyLogConsistencyProof": Row(EVERYONE),
    "getCustodianKey": Row(EVERYONE),
    "publishCustodianKey": only("admin"),
    # Audit trail: compliance officers; clients read their own accounting of disclosures.
    "getAuditLogStatus": only("compliance_officer"),
    "getAuditCheckpoint": only("compliance_officer"),
    "getAuditInclusionProof": only("compliance_officer"),
    "getAuditConsistencyProof": only("compliance_officer"),
    "addAuditCosignature": only("compliance_officer"),
    "listAuditEvents": only("compliance_officer"),
    "exportAuditTrail": only("compliance_officer"),
    "getBreachScope": only("compliance_officer"),
    "getBreachScopeSummary": only("compliance_officer"),
    "listMyDisclosures": only("client", "revoked_client"),
    # Consent: the client signs; the parties and compliance read.
    "grantConsent": only("client", revoked_client=404),
    "revokeConsent": only("client", revoked_client=404),
    "listConsents": Row(EVERYONE),
    "getConsentHistory": only("client", "clinician", "compliance_officer", deny=404),
    "getConsentReceipt": only("client", "clinician", "compliance_officer", deny=404),
    # Break-glass (opened by the colleague for the client whose consent was revoked).
    "openEmergencyAccess": only("clinician", "colleague"),
    "approveEmergencyAccess": only("admin", "compliance_officer"),
    "addEmergencyKeyWraps": only("admin", "compliance_officer"),
    # Closed by the clinician who opened it, or a compliance officer; others do not see it.
    "closeEmergencyAccess": only("colleague", "compliance_officer", deny=404),
    "listEmergencyAccess": only("clinician", "colleague", "compliance_officer"),
    # Retention, legal holds, erasure.
    "listRetentionPolicies": Row(EVERYONE),
    "setRetentionPolicy": only("admin"),
    "listRetentionRuns": only("admin", "compliance_officer"),
    "placeLegalHold": only("compliance_officer"),
    "listLegalHolds": only("compliance_officer"),
    "releaseLegalHold": only("compliance_officer"),
    "fileErasureRequest": only("client", "revoked_client"),
    "listMyErasureRequests": only("client", "revoked_client"),
    "listErasureRequests": only("compliance_officer"),
    "decideErasureRequest": only("compliance_officer"),
    # A client's record: the client, and the clinician their consent names. Outside the
    # client's circle (admins, compliance officers, a clinician who does not treat them,
    # another client) the record does not exist.
    "getClient": only("client", "clinician", deny=404),
    "listNotes": only("client", "clinician", deny=404),
    # The client knows their own record but writes no notes (403).
    "createNote": only("clinician", deny=404, client=403),
    # A note is sealed to its author and the custodian: a client sees it once it is shared;
    # whoever cannot read it is told it does not exist.
    "getNote": only("clinician", deny=404),
    "amendNote": only("clinician", deny=404),
    "shareNote": only("clinician", deny=404),
    # Conversations (the client and their clinician are its members).
    # A clinician outside the client's circle is told what a client_id naming nobody gets (422).
    "createConversation": only("clinician", colleague=422),
    "listConversations": Row(EVERYONE),
    "getConversation": only("client", "clinician", deny=404),
    "joinConversation": only(deny=404),
    # Staff without keys cannot be an envelope's sender: that input check (422) comes first,
    # before the conversation is looked up, so it tells nothing about the conversation.
    "sendMessage": only("client", "clinician", deny=404, admin=422, compliance_officer=422),
    "listMessages": only("client", "clinician", deny=404),
    "markConversationRead": only("client", "clinician", deny=404),
    "addConversationMember": only("clinician", deny=404, client=403),
    "removeConversationMember": only("clinician", deny=404, client=403),
    "uploadAttachment": only("client", "clinician", deny=404),
    "downloadAttachment": only("client", "clinician", deny=404),
}


def fuzzing_role() -> dict[str, str]:
    """The role each operation is fuzzed as: one that may call it (the clinician when several may)."""
    preference = ("clinician", "client", "compliance_officer", "admin", "colleague", "revoked_client")
    chosen: dict[str, str] = {}
    for operation_id, row in TABLE.items():
        for role in preference:
            if role in row.allowed:
                chosen[operation_id] = role
                break
    return chosen
