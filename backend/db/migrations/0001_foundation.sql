-- 0001: organizations, accounts, sessions, MFA, throttling, invites, audit events.
-- Invariants live here too: checks, uniqueness, and triggers for the rules a
-- single row cannot state (roles in a care relationship, the append-only log).

CREATE TABLE organizations (
    id          uuid PRIMARY KEY,
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{1,62}$'),
    name        text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL
);

CREATE TABLE accounts (
    id                  uuid PRIMARY KEY,
    org_id              uuid NOT NULL REFERENCES organizations (id),
    email               text NOT NULL CHECK (char_length(email) BETWEEN 3 AND 254 AND email LIKE '%_@_%'),
    display_name        text NOT NULL CHECK (char_length(display_name) BETWEEN 1 AND 200),
    role                text NOT NULL CHECK (role IN ('client', 'clinician', 'compliance_officer', 'admin')),
    status              text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    password_hash       text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    password_changed_at timestamptz NOT NULL,
    -- TOTP seeds are sealed with the server key (XChaCha20-Poly1305, AD = account id).
    totp_secret_sealed  bytea,
    totp_pending_sealed bytea,
    totp_enabled_at     timestamptz,
    totp_last_step      bigint,
    created_at          timestamptz NOT NULL,
    created_by          uuid REFERENCES accounts (id),
    CONSTRAINT accounts_totp_consistent CHECK ((totp_secret_sealed IS NULL) = (totp_enabled_at IS NULL)),
    UNIQUE (org_id, id)
);
-- Email addresses are unique per organization, case-insensitively.
CREATE UNIQUE INDEX accounts_org_email_key ON accounts (org_id, lower(email));

CREATE TABLE recovery_codes (
    account_id  uuid NOT NULL REFERENCES accounts (id),
    code_digest bytea NOT NULL CHECK (octet_length(code_digest) = 32),
    created_at  timestamptz NOT NULL,
    used_at     timestamptz,
    PRIMARY KEY (account_id, code_digest)
);

CREATE TABLE sessions (
    id                  uuid PRIMARY KEY,
    account_id          uuid NOT NULL REFERENCES accounts (id),
    org_id              uuid NOT NULL REFERENCES organizations (id),
    -- Only SHA-256 of the bearer token is stored.
    token_digest        bytea NOT NULL UNIQUE CHECK (octet_length(token_digest) = 32),
    mfa_satisfied       boolean NOT NULL,
    created_at          timestamptz NOT NULL,
    last_seen_at        timestamptz NOT NULL,
    idle_expires_at     timestamptz NOT NULL,
    absolute_expires_at timestamptz NOT NULL,
    revoked_at          timestamptz,
    revoked_reason      text CHECK (revoked_reason IN ('logout', 'logout_all', 'password_change', 'account_disabled', 'mfa_change', 'erasure')),
    CONSTRAINT sessions_expiry_order CHECK (idle_expires_at <= absolute_expires_at AND created_at < absolute_expires_at),
    CONSTRAINT sessions_revocation_complete CHECK ((revoked_at IS NULL) = (revoked_reason IS NULL)),
    FOREIGN KEY (org_id, account_id) REFERENCES accounts (org_id, id)
);
CREATE INDEX sessions_account_live_idx ON sessions (account_id) WHERE revoked_at IS NULL;

-- Failed-login throttling, durable across workers and restarts. Keys are keyed
-- digests (HMAC) of "org + email" or of the client address: no raw identifiers.
CREATE TABLE login_throttle (
    scope             text NOT NULL CHECK (scope IN ('account', 'address')),
    key_digest        bytea NOT NULL CHECK (octet_length(key_digest) = 32),
    failures          integer NOT NULL CHECK (failures >= 0),
    window_started_at timestamptz NOT NULL,
    locked_until      timestamptz,
    updated_at        timestamptz NOT NULL,
    PRIMARY KEY (scope, key_digest)
);

CREATE TABLE invites (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES organizations (id),
    code_digest bytea NOT NULL UNIQUE CHECK (octet_length(code_digest) = 32),
    created_by  uuid NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    redeemed_at timestamptz,
    redeemed_by uuid REFERENCES accounts (id),
    CONSTRAINT invites_expiry_after_creation CHECK (expires_at > created_at),
    CONSTRAINT invites_redemption_complete CHECK ((redeemed_at IS NULL) = (redeemed_by IS NULL)),
    FOREIGN KEY (org_id, created_by) REFERENCES accounts (org_id, id)
);

-- Who treats whom: created when a client redeems a clinician's invite.
CREATE TABLE care_relationships (
    org_id       uuid NOT NULL,
    client_id    uuid NOT NULL,
    clinician_id uuid NOT NULL,
    created_at   timestamptz NOT NULL,
    source       text NOT NULL CHECK (source IN ('invite', 'admin')),
    PRIMARY KEY (client_id, clinician_id),
    FOREIGN KEY (org_id, client_id) REFERENCES accounts (org_id, id),
    FOREIGN KEY (org_id, clinician_id) REFERENCES accounts (org_id, id)
);

CREATE FUNCTION care_relationship_roles() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT role FROM accounts WHERE id = NEW.client_id) IS DISTINCT FROM 'client' THEN
        RAISE EXCEPTION 'care relationship client must have role client'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'care_relationships_client_role';
    END IF;
    IF (SELECT role FROM accounts WHERE id = NEW.clinician_id) IS DISTINCT FROM 'clinician' THEN
        RAISE EXCEPTION 'care relationship clinician must have role clinician'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'care_relationships_clinician_role';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER care_relationships_roles
    BEFORE INSERT OR UPDATE ON care_relationships
    FOR EACH ROW EXECUTE FUNCTION care_relationship_roles();

-- An invite is issued by a clinician; the database refuses anything else.
CREATE FUNCTION invite_issuer_role() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT role FROM accounts WHERE id = NEW.created_by) IS DISTINCT FROM 'clinician' THEN
        RAISE EXCEPTION 'invites are issued by clinicians'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'invites_issuer_role';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER invites_issuer_role
    BEFORE INSERT ON invites
    FOR EACH ROW EXECUTE FUNCTION invite_issuer_role();

-- The audit trail. Shaped after FHIR AuditEvent; holds pseudonymous ids and codes,
-- never names, emails or content. Rows are never changed or removed: the verifiable
-- Merkle log is built from them in insertion order (seq).
CREATE TABLE audit_events (
    seq                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id             uuid NOT NULL UNIQUE,
    recorded_at          timestamptz NOT NULL,
    org_id               uuid,
    action               text NOT NULL CHECK (action IN ('C', 'R', 'U', 'D', 'E')),
    event_type           text NOT NULL CHECK (event_type ~ '^[a-z][a-z0-9_.-]{1,63}$'),
    outcome              smallint NOT NULL CHECK (outcome IN (0, 4, 8, 12)),
    outcome_reason       text CHECK (outcome_reason ~ '^[a-z][a-z0-9_]{0,63}$'),
    agent_account_id     uuid,
    agent_role           text CHECK (agent_role IN ('client', 'clinician', 'compliance_officer', 'admin')),
    agent_address_digest bytea CHECK (octet_length(agent_address_digest) = 32),
    source_instance      text NOT NULL CHECK (char_length(source_instance) BETWEEN 1 AND 128),
    entity_type          text CHECK (entity_type ~ '^[a-z][a-z0-9_]{0,63}$'),
    entity_id            uuid,
    subject_id           uuid,
    purpose_of_use       text CHECK (purpose_of_use ~ '^[A-Z]{2,16}$'),
    request_id           text CHECK (char_length(request_id) <= 64),
    consent_id           uuid
);
CREATE INDEX audit_events_org_time_idx ON audit_events (org_id, recorded_at);
CREATE INDEX audit_events_agent_time_idx ON audit_events (agent_account_id, recorded_at);
CREATE INDEX audit_events_subject_time_idx ON audit_events (subject_id, recorded_at);

CREATE FUNCTION audit_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER audit_events_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
-- ENABLE ALWAYS: the triggers fire even under session_replication_role = replica.
ALTER TABLE audit_events ENABLE ALWAYS TRIGGER audit_events_no_update_delete;
ALTER TABLE audit_events ENABLE ALWAYS TRIGGER audit_events_no_truncate;

-- Raw client addresses, for security investigations only, kept briefly and apart
-- from the log (which holds a keyed digest) so they can be purged without touching it.
CREATE TABLE audit_addresses (
    event_id    uuid PRIMARY KEY REFERENCES audit_events (event_id),
    address     inet NOT NULL,
    recorded_at timestamptz NOT NULL
);
CREATE INDEX audit_addresses_time_idx ON audit_addresses (recorded_at);
