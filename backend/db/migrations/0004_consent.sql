-- 0004: consent as an append-only sequence of events, its projection, and break-glass access.

CREATE TABLE consent_events (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    uuid NOT NULL UNIQUE,
    consent_id  uuid NOT NULL,
    org_id      uuid NOT NULL,
    client_id   uuid NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('grant', 'revoke', 'expire')),
    -- The client-signed statement (crypto.public.ConsentStatement, canonical JSON) for a
    -- grant or revoke; an expiry is recorded by the service and carries none.
    statement   bytea CHECK (octet_length(statement) <= 4096),
    recorded_at timestamptz NOT NULL,
    -- The server's Ed25519 receipt over (event, statement digest, time).
    receipt     bytea,
    CONSTRAINT consent_events_statement_present CHECK ((kind = 'expire') = (statement IS NULL)),
    CONSTRAINT consent_events_receipt_present CHECK ((kind = 'expire') = (receipt IS NULL)),
    FOREIGN KEY (org_id, client_id) REFERENCES accounts (org_id, id)
);
CREATE INDEX consent_events_consent_idx ON consent_events (consent_id, seq);

CREATE FUNCTION consent_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'consent_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER consent_events_no_update_delete
    BEFORE UPDATE OR DELETE ON consent_events
    FOR EACH ROW EXECUTE FUNCTION consent_events_append_only();
CREATE TRIGGER consent_events_no_truncate
    BEFORE TRUNCATE ON consent_events
    FOR EACH STATEMENT EXECUTE FUNCTION consent_events_append_only();
ALTER TABLE consent_events ENABLE ALWAYS TRIGGER consent_events_no_update_delete;
ALTER TABLE consent_events ENABLE ALWAYS TRIGGER consent_events_no_truncate;

-- The current state, projected from the events in the same transaction.
CREATE TABLE consents (
    consent_id         uuid PRIMARY KEY,
    org_id             uuid NOT NULL,
    client_id          uuid NOT NULL,
    client_key_version integer NOT NULL CHECK (client_key_version >= 1),
    grantee_type       text NOT NULL CHECK (grantee_type IN ('clinician', 'organization')),
    grantee_id         uuid NOT NULL,
    scopes             text[] NOT NULL CHECK (cardinality(scopes) BETWEEN 1 AND 16),
    purpose            text NOT NULL CHECK (purpose ~ '^[A-Z]{2,16}$'),
    valid_from         timestamptz NOT NULL,
    valid_until        timestamptz,
    status             text NOT NULL CHECK (status IN ('active', 'revoked', 'expired')),
    granted_at         timestamptz NOT NULL,
    ended_at           timestamptz,
    CONSTRAINT consents_validity_order CHECK (valid_until IS NULL OR valid_until > valid_from),
    CONSTRAINT consents_end_recorded CHECK ((status = 'active') = (ended_at IS NULL)),
    CONSTRAINT consents_org_grantee CHECK (grantee_type <> 'organization' OR grantee_id = org_id),
    FOREIGN KEY (org_id, client_id) REFERENCES accounts (org_id, id)
);
CREATE INDEX consents_client_idx ON consents (client_id);
CREATE INDEX consents_grantee_active_idx ON consents (grantee_id) WHERE status = 'active';

-- A consent ends once; nothing else about it ever changes.
CREATE FUNCTION consents_transition() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status <> 'active' OR NEW.status = 'active'
       OR (NEW.consent_id, NEW.org_id, NEW.client_id, NEW.client_key_version, NEW.grantee_type, NEW.grantee_id,
           NEW.scopes, NEW.purpose, NEW.valid_from, NEW.valid_until, NEW.granted_at)
          IS DISTINCT FROM
          (OLD.consent_id, OLD.org_id, OLD.client_id, OLD.client_key_version, OLD.grantee_type, OLD.grantee_id,
           OLD.scopes, OLD.purpose, OLD.valid_from, OLD.valid_until, OLD.granted_at) THEN
        RAISE EXCEPTION 'a consent may only end once (active -> revoked or expired)'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'consents_transition';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER consents_transition
    BEFORE UPDATE ON consents
    FOR EACH ROW EXECUTE FUNCTION consents_transition();

-- Break-glass: a clinician opens emergency access to one client for a stated reason and
-- a short time; a second person (holding the custodian key) approves it.
CREATE TABLE emergency_access (
    id           uuid PRIMARY KEY,
    org_id       uuid NOT NULL,
    client_id    uuid NOT NULL,
    clinician_id uuid NOT NULL,
    reason       text NOT NULL CHECK (char_length(reason) BETWEEN 10 AND 1000),
    opened_at    timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    approved_by  uuid,
    approved_at  timestamptz,
    closed_at    timestamptz,
    CONSTRAINT emergency_access_expiry CHECK (expires_at > opened_at AND expires_at <= opened_at + interval '24 hours'),
    CONSTRAINT emergency_access_dual_control CHECK (approved_by IS NULL OR approved_by <> clinician_id),
    CONSTRAINT emergency_access_approval_complete CHECK ((approved_by IS NULL) = (approved_at IS NULL)),
    FOREIGN KEY (org_id, client_id) REFERENCES accounts (org_id, id),
    FOREIGN KEY (org_id, clinician_id) REFERENCES accounts (org_id, id),
    FOREIGN KEY (org_id, approved_by) REFERENCES accounts (org_id, id)
);
CREATE INDEX emergency_access_client_idx ON emergency_access (client_id, clinician_id);
CREATE INDEX emergency_access_org_time_idx ON emergency_access (org_id, opened_at);
