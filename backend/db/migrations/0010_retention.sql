-- 0010: retention (issue 7; decision record docs/decisions/0012-retention-and-erasure.md).
--
-- Retention policies per organization and data category (defaults below, with their
-- legal basis), legal holds, the record of retention runs, erasure requests (GDPR
-- Art. 17), and the functions that delete. The application role keeps INSERT and
-- SELECT only on the append-only tables (messages, notes, attachments, consent events):
-- it deletes them only through the SECURITY DEFINER functions below, which compute the
-- cutoffs from the stored policies (never ahead of the database clock), skip what a
-- legal hold covers, and for erasure act only on an approved request. Holds are checked
-- again by triggers on every table they cover, as a backstop.

-- ------------------------------------------------------------------ accounts
-- Closed (disabled or erased) accounts record when; an erased account has no
-- credentials left and never becomes active again.
ALTER TABLE accounts DROP CONSTRAINT accounts_status_check;
ALTER TABLE accounts
    ADD CONSTRAINT accounts_status_check CHECK (status IN ('active', 'disabled', 'erased')),
    ADD COLUMN closed_at timestamptz,
    ADD COLUMN erased_at timestamptz,
    ALTER COLUMN password_hash DROP NOT NULL,
    ADD CONSTRAINT accounts_password_present CHECK (password_hash IS NOT NULL OR status = 'erased'),
    ADD CONSTRAINT accounts_closed_recorded CHECK ((status = 'active') = (closed_at IS NULL)),
    ADD CONSTRAINT accounts_erasure_complete CHECK (
        erased_at IS NULL OR (status = 'erased' AND password_hash IS NULL AND totp_secret_sealed IS NULL
                              AND totp_pending_sealed IS NULL AND totp_enabled_at IS NULL));

-- ------------------------------------------------------------------ legal holds
-- A compliance officer holds everything about a client, or one conversation. A hold is
-- released, never deleted or edited.
CREATE TABLE legal_holds (
    seq             bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id              uuid PRIMARY KEY,
    org_id          uuid NOT NULL REFERENCES organizations (id),
    scope           text NOT NULL CHECK (scope IN ('client', 'conversation')),
    client_id       uuid,
    -- No foreign key: erasure may delete a conversation that a released hold once named.
    conversation_id uuid,
    reason          text NOT NULL CHECK (char_length(reason) BETWEEN 10 AND 1000),
    placed_by       uuid NOT NULL,
    placed_at       timestamptz NOT NULL,
    released_by     uuid,
    released_at     timestamptz,
    release_reason  text CHECK (char_length(release_reason) BETWEEN 10 AND 1000),
    CONSTRAINT legal_holds_target CHECK (
        (scope = 'client') = (client_id IS NOT NULL) AND (scope = 'conversation') = (conversation_id IS NOT NULL)),
    CONSTRAINT legal_holds_release_complete CHECK (
        (released_at IS NULL) = (released_by IS NULL) AND (released_at IS NULL) = (release_reason IS NULL)),
    CONSTRAINT legal_holds_release_order CHECK (released_at IS NULL OR released_at >= placed_at),
    FOREIGN KEY (org_id, client_id) REFERENCES accounts (org_id, id),
    FOREIGN KEY (org_id, placed_by) REFERENCES accounts (org_id, id),
    FOREIGN KEY (org_id, released_by) REFERENCES accounts (org_id, id)
);
CREATE INDEX legal_holds_org_seq_idx ON legal_holds (org_id, seq);

CREATE FUNCTION legal_holds_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.released_at IS NULL AND NEW.released_at IS NOT NULL
       AND (to_jsonb(NEW) - 'released_by' - 'released_at' - 'release_reason')
           = (to_jsonb(OLD) - 'released_by' - 'released_at' - 'release_reason') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'a legal hold is only ever released, once: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER legal_holds_guard BEFORE UPDATE OR DELETE ON legal_holds
    FOR EACH ROW EXECUTE FUNCTION legal_holds_guard();
CREATE TRIGGER legal_holds_no_truncate BEFORE TRUNCATE ON legal_holds
    FOR EACH STATEMENT EXECUTE FUNCTION legal_holds_guard();
ALTER TABLE legal_holds ENABLE ALWAYS TRIGGER legal_holds_guard;
ALTER TABLE legal_holds ENABLE ALWAYS TRIGGER legal_holds_no_truncate;

-- What active holds cover. A client hold covers the client's account and keys, their
-- notes and consent records, every conversation about them or that they were ever a
-- member of, and the audit events naming them. A conversation hold covers its
-- messages, attachments and members.
CREATE VIEW held_accounts AS
    SELECT DISTINCT client_id AS account_id FROM legal_holds WHERE released_at IS NULL AND scope = 'client';
CREATE VIEW held_conversations AS
    SELECT conversation_id FROM legal_holds WHERE released_at IS NULL AND scope = 'conversation'
    UNION
    SELECT c.id FROM conversations c JOIN held_accounts h ON h.account_id = c.client_id
    UNION
    SELECT m.conversation_id FROM conversation_members m JOIN held_accounts h ON h.account_id = m.account_id;

-- ------------------------------------------------------------------ policies
-- One row per category with org_id NULL: the defaults. An organization's admin may
-- override a category's period and basis; the action and the event a period counts
-- from are fixed per category (the shape constraint).
CREATE TABLE retention_policies (
    org_id      uuid REFERENCES organizations (id),
    category    text NOT NULL,
    period_days integer NOT NULL,
    counts_from text NOT NULL,
    action      text NOT NULL,
    legal_basis text NOT NULL CHECK (char_length(legal_basis) BETWEEN 10 AND 2000),
    updated_at  timestamptz NOT NULL,
    updated_by  uuid,
    CONSTRAINT retention_policies_key UNIQUE NULLS NOT DISTINCT (org_id, category),
    CONSTRAINT retention_policies_shape CHECK ((category, counts_from, action) IN (
        ('messages', 'last_activity', 'delete'),
        ('attachments', 'created', 'delete'),
        ('notes', 'last_activity', 'delete'),
        ('sessions', 'last_activity', 'delete'),
        ('invites', 'last_activity', 'delete'),
        ('key_backups', 'account_closed', 'delete'),
        ('consent_events', 'last_activity', 'delete'),
        ('audit_events', 'created', 'prune_to_hash'))),
    -- The database's own floor: a period of at least a day (at most a century), and
    -- never under HIPAA's six years (45 CFR 164.316(b)(2)(i)) for the audit log. The
    -- service enforces the (higher) floors of its settings on top.
    CONSTRAINT retention_policies_period CHECK (period_days BETWEEN 1 AND 36500),
    CONSTRAINT retention_policies_audit_floor CHECK (category <> 'audit_events' OR period_days >= 2192),
    CONSTRAINT retention_policies_default_unowned CHECK (org_id IS NOT NULL OR updated_by IS NULL),
    FOREIGN KEY (org_id, updated_by) REFERENCES accounts (org_id, id)
);

INSERT INTO retention_policies (org_id, category, period_days, counts_from, action, legal_basis, updated_at)
VALUES
(NULL, 'messages', 1095, 'last_activity', 'delete',
 'Secure messages are the communication channel, not the designated record set: clinically relevant '
 'content is documented in session notes. Kept 3 years after the last edit of a message for continuity '
 'of care and the defence of legal claims (GDPR Art. 17(3)(e); malpractice limitation periods are '
 'commonly 2 to 3 years), then deleted (GDPR Art. 5(1)(e) storage limitation). Raise it where local law '
 'makes messages part of the medical record.', now()),
(NULL, 'attachments', 1095, 'created', 'delete',
 'Files shared in conversations follow the messages that carry their keys: kept 3 years after upload '
 '(GDPR Art. 17(3)(e) for legal claims), then deleted (GDPR Art. 5(1)(e)).', now()),
(NULL, 'notes', 3650, 'last_activity', 'delete',
 'Clinical records. State medical-record retention laws commonly require 5 to 10 years after the last '
 'entry for adults (longer for minors: raise it for paediatric practices); GDPR Art. 9(2)(h) and '
 'Art. 17(3)(c). Counted from the last amendment of a note, then deleted.', now()),
(NULL, 'sessions', 30, 'last_activity', 'delete',
 'Session records only authenticate requests; login history stays in the audit log. Deleted 30 days '
 'after a session was last used or revoked (GDPR Art. 5(1)(c) and (e)).', now()),
(NULL, 'invites', 30, 'last_activity', 'delete',
 'Invite codes are needed only until redeemed or expired; deleted 30 days later (GDPR Art. 5(1)(e)). '
 'The care relationship an invite created and its audit events remain.', now()),
(NULL, 'key_backups', 30, 'account_closed', 'delete',
 'The passphrase-encrypted private keys are held for the client alone: deleted 30 days after the '
 'account is closed (time to undo a mistaken closure). An approved erasure deletes them at once '
 '(GDPR Art. 17).', now()),
(NULL, 'consent_events', 2192, 'last_activity', 'delete',
 'Signed consent statements and receipts prove what was authorized: HIPAA 45 CFR 164.508(b)(6) and '
 '164.530(j)(2) keep authorizations 6 years from when they were last in effect; GDPR Art. 7(1). '
 'Counted from the end of the consent (revocation or expiry), then deleted.', now()),
(NULL, 'audit_events', 3650, 'created', 'prune_to_hash',
 'HIPAA 45 CFR 164.316(b)(2)(i) requires 6 years (the floor, enforced); ASTM E2147-18 recommends '
 'keeping audit logs as long as the records they describe, so 10 years like clinical notes. Pruning '
 'removes an event''s leaf bytes only: its hash stays, so the log and every proof still verify.', now());

-- The cutoff per organization for one category at a time: the organization's period,
-- else the default; the row with org_id NULL applies to rows without an organization.
-- A category without a default row yields no cutoff at all, so nothing is deleted.
CREATE FUNCTION retention_cutoffs(p_category text, p_as_of timestamptz)
RETURNS TABLE (org_id uuid, cutoff timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT o.id, p_as_of - make_interval(days => coalesce(own.period_days, def.period_days))
    FROM organizations o
    CROSS JOIN (SELECT period_days FROM retention_policies WHERE org_id IS NULL AND category = p_category) def
    LEFT JOIN retention_policies own ON own.org_id = o.id AND own.category = p_category
    UNION ALL
    SELECT NULL, p_as_of - make_interval(days => period_days)
    FROM retention_policies WHERE org_id IS NULL AND category = p_category
$$;

-- Retention never runs ahead of the database's clock (a few minutes of skew allowed),
-- so a caller cannot make young rows look old.
CREATE FUNCTION retention_check_as_of(p_as_of timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF p_as_of IS NULL OR p_as_of > now() + interval '5 minutes' THEN
        RAISE EXCEPTION 'retention cannot run ahead of the database clock'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END $$;

-- ------------------------------------------------------------------ runs
CREATE TABLE retention_runs (
    seq         bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id          uuid PRIMARY KEY,
    started_at  timestamptz NOT NULL,
    -- The time the periods were counted back from (fixed for the whole run).
    as_of       timestamptz NOT NULL,
    finished_at timestamptz,
    dry_run     boolean NOT NULL,
    status      text NOT NULL CHECK (status IN ('running', 'completed', 'failed', 'abandoned')),
    trigger     text NOT NULL CHECK (trigger IN ('cli', 'scheduler')),
    instance    text NOT NULL CHECK (char_length(instance) BETWEEN 1 AND 128),
    -- Totals per category: {"messages": {"candidates": n, "held": n, "deleted": n, "skipped": n}, ...}
    counts      jsonb NOT NULL DEFAULT '{}',
    CONSTRAINT retention_runs_finished CHECK ((status = 'running') = (finished_at IS NULL))
);

-- Counts per run, organization and category (org_id NULL: rows without one), kept
-- up to date batch by batch in the batch's own transaction.
CREATE TABLE retention_run_counts (
    run_id     uuid NOT NULL REFERENCES retention_runs (id),
    org_id     uuid,
    category   text NOT NULL CHECK (category ~ '^[a-z][a-z_]{1,31}$'),
    candidates bigint NOT NULL DEFAULT 0 CHECK (candidates >= 0),
    held       bigint NOT NULL DEFAULT 0 CHECK (held >= 0),
    deleted    bigint NOT NULL DEFAULT 0 CHECK (deleted >= 0),
    skipped    bigint NOT NULL DEFAULT 0 CHECK (skipped >= 0),
    CONSTRAINT retention_run_counts_key UNIQUE NULLS NOT DISTINCT (run_id, org_id, category)
);

-- One row per committed batch and organization: what its audit event (entity
-- retention_batch, in that organization's trail) refers to, with the count.
CREATE TABLE retention_batches (
    id           uuid PRIMARY KEY,
    run_id       uuid REFERENCES retention_runs (id),
    erasure_id   uuid,
    org_id       uuid,
    category     text NOT NULL CHECK (category ~ '^[a-z][a-z_]{1,31}$'),
    deleted      bigint NOT NULL CHECK (deleted >= 0),
    committed_at timestamptz NOT NULL,
    CONSTRAINT retention_batches_origin CHECK ((run_id IS NULL) <> (erasure_id IS NULL))
);
CREATE INDEX retention_batches_run_idx ON retention_batches (run_id);

-- Every change of a policy, old and new values: what its audit event
-- (retention.policy_update, entity retention_policy_change) refers to.
CREATE TABLE retention_policy_changes (
    id              uuid PRIMARY KEY,
    org_id          uuid NOT NULL REFERENCES organizations (id),
    category        text NOT NULL,
    old_period_days integer NOT NULL,
    new_period_days integer NOT NULL,
    old_legal_basis text NOT NULL,
    new_legal_basis text NOT NULL,
    changed_by      uuid NOT NULL,
    changed_at      timestamptz NOT NULL,
    FOREIGN KEY (org_id, changed_by) REFERENCES accounts (org_id, id)
);
CREATE INDEX retention_policy_changes_org_idx ON retention_policy_changes (org_id, changed_at);

CREATE FUNCTION retention_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER retention_batches_no_update_delete BEFORE UPDATE OR DELETE ON retention_batches
    FOR EACH ROW EXECUTE FUNCTION retention_append_only();
CREATE TRIGGER retention_batches_no_truncate BEFORE TRUNCATE ON retention_batches
    FOR EACH STATEMENT EXECUTE FUNCTION retention_append_only();
CREATE TRIGGER retention_policy_changes_no_update_delete BEFORE UPDATE OR DELETE ON retention_policy_changes
    FOR EACH ROW EXECUTE FUNCTION retention_append_only();
CREATE TRIGGER retention_policy_changes_no_truncate BEFORE TRUNCATE ON retention_policy_changes
    FOR EACH STATEMENT EXECUTE FUNCTION retention_append_only();
ALTER TABLE retention_batches ENABLE ALWAYS TRIGGER retention_batches_no_update_delete;
ALTER TABLE retention_batches ENABLE ALWAYS TRIGGER retention_batches_no_truncate;
ALTER TABLE retention_policy_changes ENABLE ALWAYS TRIGGER retention_policy_changes_no_update_delete;
ALTER TABLE retention_policy_changes ENABLE ALWAYS TRIGGER retention_policy_changes_no_truncate;

-- ------------------------------------------------------------------ erasure
CREATE TABLE erasure_requests (
    seq             bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id              uuid PRIMARY KEY,
    org_id          uuid NOT NULL,
    client_id       uuid NOT NULL,
    -- The client's own words, optional; cleared when the erasure completes.
    reason          text CHECK (char_length(reason) BETWEEN 1 AND 1000),
    -- SHA-256 of the receipt token the client got when filing: it shows the outcome
    -- after the account (and with it the client's login) is gone.
    receipt_digest  bytea NOT NULL UNIQUE CHECK (octet_length(receipt_digest) = 32),
    status          text NOT NULL CHECK (status IN ('pending', 'rejected', 'approved', 'held', 'completed')),
    filed_at        timestamptz NOT NULL,
    decided_by      uuid,
    decided_at      timestamptz,
    decision_reason text CHECK (char_length(decision_reason) BETWEEN 10 AND 1000),
    started_at      timestamptz,
    completed_at    timestamptz,
    -- Rows deleted per category, and what was kept and why (Art. 17(3)).
    deleted         jsonb NOT NULL DEFAULT '{}',
    kept            jsonb NOT NULL DEFAULT '[]',
    CONSTRAINT erasure_requests_decision CHECK (
        (status = 'pending') = (decided_at IS NULL)
        AND (decided_at IS NULL) = (decided_by IS NULL)
        AND (decided_at IS NULL) = (decision_reason IS NULL)),
    CONSTRAINT erasure_requests_not_own CHECK (decided_by IS NULL OR decided_by <> client_id),
    CONSTRAINT erasure_requests_completed CHECK ((status = 'completed') = (completed_at IS NOT NULL)),
    CONSTRAINT erasure_requests_started CHECK (started_at IS NULL OR status IN ('approved', 'held', 'completed')),
    FOREIGN KEY (org_id, client_id) REFERENCES accounts (org_id, id),
    FOREIGN KEY (org_id, decided_by) REFERENCES accounts (org_id, id)
);
CREATE INDEX erasure_requests_org_seq_idx ON erasure_requests (org_id, seq);
CREATE INDEX erasure_requests_client_idx ON erasure_requests (client_id);
-- At most one open request per client.
CREATE UNIQUE INDEX erasure_requests_one_open ON erasure_requests (client_id)
    WHERE status IN ('pending', 'approved', 'held');

CREATE FUNCTION erasure_requests_transition() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND (NEW.id, NEW.org_id, NEW.client_id, NEW.receipt_digest, NEW.filed_at)
                            = (OLD.id, OLD.org_id, OLD.client_id, OLD.receipt_digest, OLD.filed_at)
       AND (OLD.status, NEW.status) IN (
           ('pending', 'rejected'), ('pending', 'approved'), ('approved', 'approved'), ('approved', 'held'),
           ('held', 'held'), ('held', 'approved'), ('approved', 'completed')) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'erasure request: % from % to % refused', TG_OP, OLD.status, NEW.status
        USING ERRCODE = 'check_violation', CONSTRAINT = 'erasure_requests_transition';
END $$;
CREATE TRIGGER erasure_requests_transition BEFORE UPDATE OR DELETE ON erasure_requests
    FOR EACH ROW EXECUTE FUNCTION erasure_requests_transition();
ALTER TABLE erasure_requests ENABLE ALWAYS TRIGGER erasure_requests_transition;

-- An account leaves 'erased' never; a held client's account is never erased; closing
-- an account records when (the key_backups period counts from it).
CREATE FUNCTION accounts_status_transition() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'erased' AND NEW.status <> 'erased' THEN
        RAISE EXCEPTION 'an erased account stays erased'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'accounts_erased_final';
    END IF;
    IF NEW.status = 'erased' AND OLD.status <> 'erased'
       AND EXISTS (SELECT 1 FROM held_accounts h WHERE h.account_id = NEW.id) THEN
        RAISE EXCEPTION 'a legal hold covers this account' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.status = 'active' THEN
        NEW.closed_at := NULL;
    ELSIF OLD.status = 'active' THEN
        NEW.closed_at := coalesce(NEW.closed_at, now());
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER accounts_status_transition BEFORE UPDATE OF status ON accounts
    FOR EACH ROW EXECUTE FUNCTION accounts_status_transition();
ALTER TABLE accounts ENABLE ALWAYS TRIGGER accounts_status_transition;

-- ------------------------------------------------------------------ hold backstops
-- Statement-level checks over the deleted rows: a statement that would remove anything
-- a hold covers fails as a whole. The deleting code already leaves held rows out.
CREATE FUNCTION legal_hold_refuse() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a legal hold covers rows this statement would remove'
        USING ERRCODE = 'insufficient_privilege';
END $$;

-- Most of the time no hold is active anywhere: one index probe, and the checks are skipped.
CREATE FUNCTION legal_holds_active() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM legal_holds WHERE released_at IS NULL)
$$;
CREATE INDEX legal_holds_active_idx ON legal_holds (id) WHERE released_at IS NULL;

CREATE FUNCTION legal_hold_check_conversation_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT legal_holds_active() THEN
        RETURN NULL;  -- no hold anywhere: nothing to check
    END IF;
    -- messages, attachments, conversation_members: rows carrying conversation_id.
    IF EXISTS (SELECT 1 FROM old_rows o JOIN held_conversations h ON h.conversation_id = o.conversation_id) THEN
        PERFORM legal_hold_refuse();
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION legal_hold_check_conversations() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT legal_holds_active() THEN
        RETURN NULL;  -- no hold anywhere: nothing to check
    END IF;
    IF EXISTS (SELECT 1 FROM old_rows o JOIN held_conversations h ON h.conversation_id = o.id) THEN
        PERFORM legal_hold_refuse();
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION legal_hold_check_recipients() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT legal_holds_active() THEN
        RETURN NULL;  -- no hold anywhere: nothing to check
    END IF;
    IF EXISTS (SELECT 1 FROM old_rows o JOIN messages m ON m.seq = o.message_seq
               JOIN held_conversations h ON h.conversation_id = m.conversation_id) THEN
        PERFORM legal_hold_refuse();
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION legal_hold_check_chunks() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT legal_holds_active() THEN
        RETURN NULL;  -- no hold anywhere: nothing to check
    END IF;
    IF EXISTS (SELECT 1 FROM old_rows o JOIN attachments a ON a.id = o.attachment_id
               JOIN held_conversations h ON h.conversation_id = a.conversation_id) THEN
        PERFORM legal_hold_refuse();
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION legal_hold_check_client_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT legal_holds_active() THEN
        RETURN NULL;  -- no hold anywhere: nothing to check
    END IF;
    -- notes, consent_events: rows carrying client_id.
    IF EXISTS (SELECT 1 FROM old_rows o JOIN held_accounts h ON h.account_id = o.client_id) THEN
        PERFORM legal_hold_refuse();
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION legal_hold_check_note_envelopes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT legal_holds_active() THEN
        RETURN NULL;  -- no hold anywhere: nothing to check
    END IF;
    IF EXISTS (SELECT 1 FROM old_rows o JOIN notes n ON n.id = o.note_id
               JOIN held_accounts h ON h.account_id = n.client_id) THEN
        PERFORM legal_hold_refuse();
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION legal_hold_check_account_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT legal_holds_active() THEN
        RETURN NULL;  -- no hold anywhere: nothing to check
    END IF;
    -- key_backups, key_bundles: rows carrying account_id.
    IF EXISTS (SELECT 1 FROM old_rows o JOIN held_accounts h ON h.account_id = o.account_id) THEN
        PERFORM legal_hold_refuse();
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION legal_hold_check_audit_prune() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT legal_holds_active() THEN
        RETURN NULL;  -- no hold anywhere: nothing to check
    END IF;
    IF EXISTS (SELECT 1 FROM new_rows n JOIN old_rows o ON o.seq = n.seq
               WHERE o.leaf IS NOT NULL AND n.leaf IS NULL
                 AND (n.subject_id IN (SELECT account_id FROM held_accounts)
                      OR n.agent_account_id IN (SELECT account_id FROM held_accounts)
                      OR n.entity_id IN (SELECT conversation_id FROM held_conversations))) THEN
        PERFORM legal_hold_refuse();
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER messages_legal_hold AFTER DELETE ON messages REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION legal_hold_check_conversation_rows();
CREATE TRIGGER attachments_legal_hold AFTER DELETE ON attachments REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION legal_hold_check_conversation_rows();
CREATE TRIGGER conversation_members_legal_hold AFTER DELETE ON conversation_members
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION legal_hold_check_conversation_rows();
CREATE TRIGGER conversations_legal_hold AFTER DELETE ON conversations REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION legal_hold_check_conversations();
CREATE TRIGGER message_recipients_legal_hold AFTER DELETE ON message_recipients
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION legal_hold_check_recipients();
CREATE TRIGGER attachment_chunks_legal_hold AFTER DELETE ON attachment_chunks REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION legal_hold_check_chunks();
CREATE TRIGGER notes_legal_hold AFTER DELETE ON notes REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION legal_hold_check_client_rows();
CREATE TRIGGER note_envelopes_legal_hold AFTER DELETE ON note_envelopes REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION legal_hold_check_note_envelopes();
CREATE TRIGGER consent_events_legal_hold AFTER DELETE ON consent_events REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION legal_hold_check_client_rows();
CREATE TRIGGER key_backups_legal_hold AFTER DELETE ON key_backups REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION legal_hold_check_account_rows();
CREATE TRIGGER key_bundles_legal_hold AFTER DELETE ON key_bundles REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION legal_hold_check_account_rows();
CREATE TRIGGER audit_events_legal_hold AFTER UPDATE ON audit_events
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION legal_hold_check_audit_prune();
ALTER TABLE messages ENABLE ALWAYS TRIGGER messages_legal_hold;
ALTER TABLE attachments ENABLE ALWAYS TRIGGER attachments_legal_hold;
ALTER TABLE conversation_members ENABLE ALWAYS TRIGGER conversation_members_legal_hold;
ALTER TABLE conversations ENABLE ALWAYS TRIGGER conversations_legal_hold;
ALTER TABLE message_recipients ENABLE ALWAYS TRIGGER message_recipients_legal_hold;
ALTER TABLE attachment_chunks ENABLE ALWAYS TRIGGER attachment_chunks_legal_hold;
ALTER TABLE notes ENABLE ALWAYS TRIGGER notes_legal_hold;
ALTER TABLE note_envelopes ENABLE ALWAYS TRIGGER note_envelopes_legal_hold;
ALTER TABLE consent_events ENABLE ALWAYS TRIGGER consent_events_legal_hold;
ALTER TABLE key_backups ENABLE ALWAYS TRIGGER key_backups_legal_hold;
ALTER TABLE key_bundles ENABLE ALWAYS TRIGGER key_bundles_legal_hold;
ALTER TABLE audit_events ENABLE ALWAYS TRIGGER audit_events_legal_hold;

-- Consent events stay append-only, except that the record of a consent that ended may be
-- deleted once its retention period is over by the database's own clock (the sweep below
-- does; erasure never does): not even the owner deletes a younger one with triggers on.
CREATE OR REPLACE FUNCTION consent_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND EXISTS (
        SELECT 1 FROM consents c
        JOIN retention_cutoffs('consent_events', now() + interval '5 minutes') k ON k.org_id = c.org_id
        WHERE c.consent_id = OLD.consent_id AND c.status <> 'active' AND c.ended_at < k.cutoff) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'consent_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

-- Retention deletes follow foreign keys: edits reference their message, amendments their note.
CREATE INDEX messages_references_idx ON messages (references_id) WHERE references_id IS NOT NULL;
CREATE INDEX notes_amends_idx ON notes (amends_id) WHERE amends_id IS NOT NULL;

-- ------------------------------------------------------------------ sweeps
-- One function per category. Each takes the run's time, a keyset position and a batch
-- size, and returns one row per organization touched: rows deleted (affected; with p_dry,
-- rows it would delete), how many units it picked (threads, attachments, consents...)
-- and the key to continue after. Fewer picked than asked means the category is done.
-- Rows locked by live traffic are skipped (SKIP LOCKED) and left for the next run.

-- Messages: a thread (a message and the edits and deletions referencing it) goes as a
-- whole once its newest envelope is past the period.
CREATE FUNCTION retention_sweep_messages(p_as_of timestamptz, p_after bigint, p_limit integer, p_dry boolean)
RETURNS TABLE (org_id uuid, affected bigint, picked integer, last_key bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    orgs uuid[];
    cuts timestamptz[];
    held uuid[];
    roots bigint[];
    root_ids uuid[];
    thread bigint[];
BEGIN
    PERFORM retention_check_as_of(p_as_of);
    SELECT array_agg(c.org_id), array_agg(c.cutoff) INTO orgs, cuts FROM retention_cutoffs('messages', p_as_of) c;
    held := ARRAY(SELECT conversation_id FROM held_conversations);
    EXECUTE format($q$
        SELECT array_agg(seq ORDER BY seq), array_agg(id) FROM (
            SELECT m.seq, m.id FROM messages m
            WHERE m.seq > $1 AND m.references_id IS NULL
              AND m.created_at < $3[array_position($2, m.org_id)]
              AND NOT (m.conversation_id = ANY ($4))
              AND NOT EXISTS (SELECT 1 FROM messages r
                              WHERE r.references_id = m.id
                                AND r.created_at >= $3[array_position($2, m.org_id)])
            ORDER BY m.seq LIMIT $5 %s) s $q$,
        CASE WHEN p_dry THEN '' ELSE 'FOR UPDATE OF m SKIP LOCKED' END)
    INTO roots, root_ids USING p_after, orgs, cuts, held, p_limit;
    IF roots IS NULL THEN
        RETURN;
    END IF;
    thread := roots || ARRAY(SELECT r.seq FROM messages r WHERE r.references_id = ANY (root_ids));
    IF p_dry THEN
        RETURN QUERY SELECT m.org_id, count(*), cardinality(roots), roots[cardinality(roots)]
                     FROM messages m WHERE m.seq = ANY (thread) GROUP BY m.org_id;
        RETURN;
    END IF;
    DELETE FROM message_recipients WHERE message_seq = ANY (thread);
    -- Edits and their message in one statement: the self-reference is checked at its end.
    RETURN QUERY WITH gone AS (DELETE FROM messages WHERE seq = ANY (thread) RETURNING messages.org_id)
                 SELECT gone.org_id, count(*), cardinality(roots), roots[cardinality(roots)]
                 FROM gone GROUP BY gone.org_id;
END $$;

CREATE FUNCTION retention_sweep_attachments(p_as_of timestamptz, p_after uuid, p_limit integer, p_dry boolean)
RETURNS TABLE (org_id uuid, affected bigint, picked integer, last_key uuid)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    orgs uuid[];
    cuts timestamptz[];
    held uuid[];
    due uuid[];
BEGIN
    PERFORM retention_check_as_of(p_as_of);
    SELECT array_agg(c.org_id), array_agg(c.cutoff) INTO orgs, cuts FROM retention_cutoffs('attachments', p_as_of) c;
    held := ARRAY(SELECT conversation_id FROM held_conversations);
    EXECUTE format($q$
        SELECT array_agg(id ORDER BY id) FROM (
            SELECT a.id FROM attachments a
            WHERE a.id > $1 AND a.created_at < $3[array_position($2, a.org_id)]
              AND NOT (a.conversation_id = ANY ($4))
            ORDER BY a.id LIMIT $5 %s) s $q$,
        CASE WHEN p_dry THEN '' ELSE 'FOR UPDATE OF a SKIP LOCKED' END)
    INTO due USING p_after, orgs, cuts, held, p_limit;
    IF due IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT a.org_id, count(*), cardinality(due), due[cardinality(due)]
                 FROM attachments a WHERE a.id = ANY (due) GROUP BY a.org_id;
    IF NOT p_dry THEN
        DELETE FROM attachment_chunks WHERE attachment_id = ANY (due);
        DELETE FROM attachments WHERE id = ANY (due);
    END IF;
END $$;

-- Notes: a note and its amendments go as a whole once the newest is past the period.
CREATE FUNCTION retention_sweep_notes(p_as_of timestamptz, p_after bigint, p_limit integer, p_dry boolean)
RETURNS TABLE (org_id uuid, affected bigint, picked integer, last_key bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    orgs uuid[];
    cuts timestamptz[];
    held uuid[];
    roots bigint[];
    thread uuid[];
BEGIN
    PERFORM retention_check_as_of(p_as_of);
    SELECT array_agg(c.org_id), array_agg(c.cutoff) INTO orgs, cuts FROM retention_cutoffs('notes', p_as_of) c;
    held := ARRAY(SELECT account_id FROM held_accounts);
    EXECUTE format($q$
        SELECT array_agg(seq ORDER BY seq) FROM (
            SELECT nt.seq FROM notes nt
            WHERE nt.seq > $1 AND nt.amends_id IS NULL
              AND nt.created_at < $3[array_position($2, nt.org_id)]
              AND NOT (nt.client_id = ANY ($4))
              AND NOT EXISTS (SELECT 1 FROM notes r
                              WHERE r.amends_id = nt.id
                                AND r.created_at >= $3[array_position($2, nt.org_id)])
            ORDER BY nt.seq LIMIT $5 %s) s $q$,
        CASE WHEN p_dry THEN '' ELSE 'FOR UPDATE OF nt SKIP LOCKED' END)
    INTO roots USING p_after, orgs, cuts, held, p_limit;
    IF roots IS NULL THEN
        RETURN;
    END IF;
    thread := ARRAY(SELECT nt.id FROM notes nt WHERE nt.seq = ANY (roots))
           || ARRAY(SELECT r.id FROM notes r JOIN notes nt ON nt.id = r.amends_id WHERE nt.seq = ANY (roots));
    RETURN QUERY SELECT nt.org_id, count(*), cardinality(roots), roots[cardinality(roots)]
                 FROM notes nt WHERE nt.id = ANY (thread) GROUP BY nt.org_id;
    IF NOT p_dry THEN
        DELETE FROM note_key_wraps WHERE note_id = ANY (thread);
        DELETE FROM note_readers WHERE note_id = ANY (thread);
        DELETE FROM note_envelopes WHERE note_id = ANY (thread);
        DELETE FROM notes WHERE id = ANY (thread) AND amends_id IS NOT NULL;
        DELETE FROM notes WHERE id = ANY (thread) AND amends_id IS NULL;
    END IF;
END $$;

-- Consent records: every event of a consent that ended (revoked or expired) before the cutoff.
CREATE FUNCTION retention_sweep_consent_events(p_as_of timestamptz, p_after uuid, p_limit integer, p_dry boolean)
RETURNS TABLE (org_id uuid, affected bigint, picked integer, last_key uuid)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    orgs uuid[];
    cuts timestamptz[];
    held uuid[];
    due uuid[];
BEGIN
    PERFORM retention_check_as_of(p_as_of);
    SELECT array_agg(c.org_id), array_agg(c.cutoff) INTO orgs, cuts FROM retention_cutoffs('consent_events', p_as_of) c;
    held := ARRAY(SELECT account_id FROM held_accounts);
    EXECUTE format($q$
        SELECT array_agg(consent_id ORDER BY consent_id) FROM (
            SELECT c.consent_id FROM consents c
            WHERE c.consent_id > $1 AND c.status <> 'active'
              AND c.ended_at < $3[array_position($2, c.org_id)]
              AND NOT (c.client_id = ANY ($4))
            ORDER BY c.consent_id LIMIT $5 %s) s $q$,
        CASE WHEN p_dry THEN '' ELSE 'FOR UPDATE OF c SKIP LOCKED' END)
    INTO due USING p_after, orgs, cuts, held, p_limit;
    IF due IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT e.org_id, count(*), cardinality(due), due[cardinality(due)]
                 FROM consent_events e WHERE e.consent_id = ANY (due) GROUP BY e.org_id;
    IF NOT p_dry THEN
        DELETE FROM consent_events WHERE consent_id = ANY (due);
        DELETE FROM consents WHERE consent_id = ANY (due);
    END IF;
END $$;

-- Sessions that ended (revoked, idle or past their absolute expiry), by last activity.
CREATE FUNCTION retention_sweep_sessions(p_as_of timestamptz, p_after uuid, p_limit integer, p_dry boolean)
RETURNS TABLE (org_id uuid, affected bigint, picked integer, last_key uuid)
LANGUAGE plpgsql AS $$
DECLARE
    orgs uuid[];
    cuts timestamptz[];
    due uuid[];
BEGIN
    PERFORM retention_check_as_of(p_as_of);
    SELECT array_agg(c.org_id), array_agg(c.cutoff) INTO orgs, cuts FROM retention_cutoffs('sessions', p_as_of) c;
    EXECUTE format($q$
        SELECT array_agg(id ORDER BY id) FROM (
            SELECT s.id FROM sessions s
            WHERE s.id > $1
              AND (s.revoked_at IS NOT NULL OR s.idle_expires_at <= $4 OR s.absolute_expires_at <= $4)
              AND greatest(s.last_seen_at, s.revoked_at) < $3[array_position($2, s.org_id)]
            ORDER BY s.id LIMIT $5 %s) s $q$,
        CASE WHEN p_dry THEN '' ELSE 'FOR UPDATE OF s SKIP LOCKED' END)
    INTO due USING p_after, orgs, cuts, p_as_of, p_limit;
    IF due IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT s.org_id, count(*), cardinality(due), due[cardinality(due)]
                 FROM sessions s WHERE s.id = ANY (due) GROUP BY s.org_id;
    IF NOT p_dry THEN
        DELETE FROM sessions WHERE id = ANY (due);
    END IF;
END $$;

-- Invites that were redeemed or expired, counted from that moment.
CREATE FUNCTION retention_sweep_invites(p_as_of timestamptz, p_after uuid, p_limit integer, p_dry boolean)
RETURNS TABLE (org_id uuid, affected bigint, picked integer, last_key uuid)
LANGUAGE plpgsql AS $$
DECLARE
    orgs uuid[];
    cuts timestamptz[];
    due uuid[];
BEGIN
    PERFORM retention_check_as_of(p_as_of);
    SELECT array_agg(c.org_id), array_agg(c.cutoff) INTO orgs, cuts FROM retention_cutoffs('invites', p_as_of) c;
    EXECUTE format($q$
        SELECT array_agg(id ORDER BY id) FROM (
            SELECT i.id FROM invites i
            WHERE i.id > $1
              AND (i.redeemed_at IS NOT NULL OR i.expires_at <= $4)
              AND coalesce(i.redeemed_at, i.expires_at) < $3[array_position($2, i.org_id)]
            ORDER BY i.id LIMIT $5 %s) s $q$,
        CASE WHEN p_dry THEN '' ELSE 'FOR UPDATE OF i SKIP LOCKED' END)
    INTO due USING p_after, orgs, cuts, p_as_of, p_limit;
    IF due IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT i.org_id, count(*), cardinality(due), due[cardinality(due)]
                 FROM invites i WHERE i.id = ANY (due) GROUP BY i.org_id;
    IF NOT p_dry THEN
        DELETE FROM invites WHERE id = ANY (due);
    END IF;
END $$;

-- Key backups of accounts closed before the cutoff.
CREATE FUNCTION retention_sweep_key_backups(p_as_of timestamptz, p_after uuid, p_limit integer, p_dry boolean)
RETURNS TABLE (org_id uuid, affected bigint, picked integer, last_key uuid)
LANGUAGE plpgsql AS $$
DECLARE
    orgs uuid[];
    cuts timestamptz[];
    held uuid[];
    due uuid[];
BEGIN
    PERFORM retention_check_as_of(p_as_of);
    SELECT array_agg(c.org_id), array_agg(c.cutoff) INTO orgs, cuts FROM retention_cutoffs('key_backups', p_as_of) c;
    held := ARRAY(SELECT account_id FROM held_accounts);
    EXECUTE format($q$
        SELECT array_agg(account_id ORDER BY account_id) FROM (
            SELECT k.account_id FROM key_backups k JOIN accounts a ON a.id = k.account_id
            WHERE k.account_id > $1 AND a.status <> 'active'
              AND a.closed_at < $3[array_position($2, k.org_id)]
              AND NOT (k.account_id = ANY ($4))
            ORDER BY k.account_id LIMIT $5 %s) s $q$,
        CASE WHEN p_dry THEN '' ELSE 'FOR UPDATE OF k SKIP LOCKED' END)
    INTO due USING p_after, orgs, cuts, held, p_limit;
    IF due IS NULL THEN
        RETURN;
    END IF;
    RETURN QUERY SELECT k.org_id, count(*), cardinality(due), due[cardinality(due)]
                 FROM key_backups k WHERE k.account_id = ANY (due) GROUP BY k.org_id;
    IF NOT p_dry THEN
        DELETE FROM key_backups WHERE account_id = ANY (due);
    END IF;
END $$;

-- ------------------------------------------------------------------ erasure sweeps
-- What an approved erasure deletes from the append-only tables: every message thread
-- and attachment in a conversation about the client, and the client's own messages and
-- uploads elsewhere; never in a held conversation. Only for a request that is approved
-- and started (the account is then already erased), never for a held client.
CREATE FUNCTION erasure_client(p_request uuid) RETURNS uuid
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_client uuid;
BEGIN
    SELECT r.client_id INTO v_client FROM erasure_requests r
    WHERE r.id = p_request AND r.status = 'approved' AND r.started_at IS NOT NULL;
    IF v_client IS NULL OR EXISTS (SELECT 1 FROM held_accounts h WHERE h.account_id = v_client) THEN
        RAISE EXCEPTION 'no approved, unheld erasure request %', p_request
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN v_client;
END $$;

CREATE FUNCTION erasure_sweep_messages(p_request uuid, p_after bigint, p_limit integer)
RETURNS TABLE (affected bigint, picked integer, last_key bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    client uuid := erasure_client(p_request);
    held uuid[] := ARRAY(SELECT conversation_id FROM held_conversations);
    own uuid[];
    joined uuid[];
    roots bigint[];
    thread bigint[];
BEGIN
    own := ARRAY(SELECT c.id FROM conversations c WHERE c.client_id = client AND NOT (c.id = ANY (held)));
    joined := ARRAY(SELECT m.conversation_id FROM conversation_members m
                    WHERE m.account_id = client AND NOT (m.conversation_id = ANY (held)));
    SELECT array_agg(seq ORDER BY seq) INTO roots FROM (
        SELECT m.seq FROM messages m
        WHERE m.conversation_id = ANY (own || joined) AND m.seq > p_after AND m.references_id IS NULL
          AND (m.conversation_id = ANY (own) OR m.sender_id = client)
        ORDER BY m.seq LIMIT p_limit FOR UPDATE OF m SKIP LOCKED) s;
    IF roots IS NULL THEN
        RETURN;
    END IF;
    thread := roots || ARRAY(SELECT r.seq FROM messages r JOIN messages m ON m.id = r.references_id
                             WHERE m.seq = ANY (roots));
    DELETE FROM message_recipients WHERE message_seq = ANY (thread);
    DELETE FROM messages WHERE seq = ANY (thread) AND references_id IS NOT NULL;
    DELETE FROM messages WHERE seq = ANY (roots);
    RETURN QUERY SELECT cardinality(thread)::bigint, cardinality(roots), roots[cardinality(roots)];
END $$;

CREATE FUNCTION erasure_sweep_attachments(p_request uuid, p_limit integer)
RETURNS TABLE (affected bigint, picked integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    client uuid := erasure_client(p_request);
    held uuid[] := ARRAY(SELECT conversation_id FROM held_conversations);
    due uuid[];
BEGIN
    SELECT array_agg(id) INTO due FROM (
        SELECT a.id FROM attachments a
        WHERE (a.uploader_id = client OR a.conversation_id IN (SELECT c.id FROM conversations c WHERE c.client_id = client))
          AND NOT (a.conversation_id = ANY (held))
        LIMIT p_limit FOR UPDATE OF a SKIP LOCKED) s;
    IF due IS NULL THEN
        RETURN;
    END IF;
    DELETE FROM attachment_chunks WHERE attachment_id = ANY (due);
    DELETE FROM attachments WHERE id = ANY (due);
    RETURN QUERY SELECT cardinality(due)::bigint, cardinality(due);
END $$;

-- Only the application role may call the privileged functions (granted below).
REVOKE ALL ON FUNCTION retention_sweep_messages(timestamptz, bigint, integer, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION retention_sweep_attachments(timestamptz, uuid, integer, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION retention_sweep_notes(timestamptz, bigint, integer, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION retention_sweep_consent_events(timestamptz, uuid, integer, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION erasure_sweep_messages(uuid, bigint, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION erasure_sweep_attachments(uuid, integer) FROM PUBLIC;

-- ------------------------------------------------------------------ privileges
-- The application role's privileges, table by table, in a table: a later migration
-- adds its tables with one INSERT (and the grant function refuses a table without a
-- row). 'NONE' keeps a table from the application role entirely.
CREATE TABLE app_role_grants (
    table_name name PRIMARY KEY,
    privileges text NOT NULL CHECK (privileges ~ '^(NONE|SELECT(, (INSERT|UPDATE|DELETE))*)$')
);
INSERT INTO app_role_grants (table_name, privileges)
SELECT t, 'SELECT, INSERT' FROM unnest(ARRAY[
    'audit_events', 'audit_log', 'audit_tree_node', 'audit_checkpoints', 'audit_cosignatures',
    'consent_events', 'messages', 'notes', 'note_envelopes', 'attachments', 'attachment_chunks',
    'retention_batches', 'retention_policy_changes'
]) AS t
UNION ALL
SELECT t, 'SELECT, INSERT, UPDATE, DELETE' FROM unnest(ARRAY[
    'organizations', 'accounts', 'recovery_codes', 'sessions', 'login_throttle', 'invites',
    'care_relationships', 'audit_addresses', 'key_bundles', 'key_backups', 'audit_pending',
    'audit_tree_state', 'consents', 'emergency_access', 'conversations', 'conversation_members',
    'message_recipients', 'account_events', 'custodian_keys', 'note_readers', 'note_key_wraps'
]) AS t
UNION ALL
SELECT t, 'SELECT, INSERT, UPDATE' FROM unnest(ARRAY[
    'retention_policies', 'retention_runs', 'retention_run_counts', 'legal_holds', 'erasure_requests'
]) AS t
UNION ALL
VALUES ('schema_migrations', 'SELECT'), ('app_role_grants', 'NONE');

CREATE OR REPLACE FUNCTION confide_grant_app_role(app_role name) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    g record;
    missing text;
BEGIN
    SELECT string_agg(tablename, ', ' ORDER BY tablename) INTO missing FROM pg_tables
    WHERE schemaname = 'public' AND tablename NOT IN (SELECT table_name FROM app_role_grants);
    IF missing IS NOT NULL THEN
        -- A table a later migration adds must be granted on purpose: fail loudly if one was missed.
        RAISE EXCEPTION 'confide_grant_app_role: a table has no privilege decision: %', missing;
    END IF;
    EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA public FROM %I', app_role);
    EXECUTE format('REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM %I', app_role);
    EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', app_role);
    FOR g IN SELECT table_name, privileges FROM app_role_grants WHERE privileges <> 'NONE' LOOP
        EXECUTE format('GRANT %s ON %I TO %I', g.privileges, g.table_name, app_role);
    END LOOP;
    -- Retention may prune an integrated event's leaf bytes (and only that: see 0009).
    EXECUTE format('GRANT UPDATE (leaf, pruned_at) ON audit_events TO %I', app_role);
    -- What legal holds cover, and the deletions the application may ask for (0010).
    EXECUTE format('GRANT SELECT ON held_accounts, held_conversations TO %I', app_role);
    FOR g IN SELECT p.oid::regprocedure AS fn FROM pg_proc p
             WHERE p.pronamespace = 'public'::regnamespace AND p.prosecdef LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', g.fn, app_role);
    END LOOP;
    -- Sequences behind identity columns.
    EXECUTE format('GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO %I', app_role);
END $$;
