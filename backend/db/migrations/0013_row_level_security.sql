-- 0013: row-level security on organization-owned tables (issue 9; decision record
-- docs/decisions/0013-row-level-security.md).
--
-- The second fence behind the application's own checks: a row of a protected table is
-- visible and writable only in a transaction that works for its organization. The
-- service starts every transaction made for a user with
--     BEGIN; SELECT set_config('confide.org_id', '<the caller''s organization>', true)
-- in one round trip (backend.db.tenancy.tenant_transaction). Without the setting, or
-- with another organization's, a protected table looks empty and refuses writes; a
-- query that forgot its organization filter therefore fails closed. Cross-organization
-- jobs (retention, consent expiry, erasure, the CLI) say so explicitly with
--     BEGIN; SELECT set_config('confide.scope', 'system', true)
-- (backend.db.tenancy.system_transaction). Both settings are transaction-local.
--
-- Who is subject to the policies: the application role (it must not have BYPASSRLS;
-- deploy/postgres/roles.sql creates it without). The migration owner owns the tables
-- and is exempt (no FORCE ROW LEVEL SECURITY), as are superusers, so migrations, the
-- SECURITY DEFINER functions below and of 0010, and the views over legal holds (owned
-- by the owner) see every row. Foreign keys and unique constraints are checked by
-- PostgreSQL regardless of the policies.
--
-- What this fences against: an application bug (a missing filter, an id from another
-- organization). What it does not: someone who can run SQL as the application role can
-- set either setting; the append-only triggers, the privileges of 0008/0010 and the
-- verifiable audit log are the fences there.

-- ------------------------------------------------------------------ the settings
-- The organization a transaction works for (NULL without one; '' once a transaction
-- that set it has ended), and whether it is a cross-organization job. A malformed
-- organization value is an error, never "every row".
CREATE FUNCTION confide_org() RETURNS uuid
LANGUAGE sql STABLE PARALLEL SAFE
RETURN nullif(current_setting('confide.org_id', true), '')::uuid;

CREATE FUNCTION confide_system_scope() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
RETURN coalesce(current_setting('confide.scope', true) = 'system', false);

-- ------------------------------------------------------------------ the policies
-- Tables with their own org_id: one policy each, for every command. The settings are
-- read in scalar subqueries, so each is read once per statement (an InitPlan), not
-- once per row.
DO $$
DECLARE
    t text;
    visible constant text := 'org_id = (SELECT confide_org()) OR (SELECT confide_system_scope())';
BEGIN
    FOREACH t IN ARRAY ARRAY[
        -- identity and keys
        'accounts', 'sessions', 'invites', 'care_relationships',
        'key_bundles', 'key_backups', 'custodian_keys',
        -- consent and break-glass
        'consents', 'consent_events', 'emergency_access',
        -- messaging, attachments, notes
        'conversations', 'conversation_members', 'messages', 'attachments', 'notes',
        -- legal holds and data-subject requests
        'legal_holds', 'erasure_requests', 'retention_policy_changes'
    ] LOOP
        EXECUTE format('CREATE POLICY org_isolation ON %I USING (%s) WITH CHECK (%s)', t, visible, visible);
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    END LOOP;
END $$;

-- Retention policies: the defaults (org_id NULL) are everyone's to read, and to lock
-- (a change of an organization's policy locks the default row, FOR UPDATE, so changes
-- serialize), but no organization changes them: an UPDATE that reaches a default row
-- fails. An organization reads and writes its own overrides only.
CREATE POLICY org_isolation ON retention_policies
    USING (org_id = (SELECT confide_org()) OR (SELECT confide_system_scope()))
    WITH CHECK (org_id = (SELECT confide_org()) OR (SELECT confide_system_scope()));
CREATE POLICY defaults_readable ON retention_policies FOR SELECT USING (org_id IS NULL);
CREATE POLICY defaults_lockable ON retention_policies FOR UPDATE USING (org_id IS NULL) WITH CHECK (false);
ALTER TABLE retention_policies ENABLE ROW LEVEL SECURITY;

-- Tables without org_id whose rows belong to a row that has one: visible and writable
-- when the parent row is (the subquery is itself subject to the parent's policy, and
-- says so again in case that ever changes).
CREATE POLICY org_isolation ON recovery_codes
    USING ((SELECT confide_system_scope()) OR EXISTS (
        SELECT 1 FROM accounts p WHERE p.id = recovery_codes.account_id AND p.org_id = (SELECT confide_org())))
    WITH CHECK ((SELECT confide_system_scope()) OR EXISTS (
        SELECT 1 FROM accounts p WHERE p.id = recovery_codes.account_id AND p.org_id = (SELECT confide_org())));
CREATE POLICY org_isolation ON message_recipients
    USING ((SELECT confide_system_scope()) OR EXISTS (
        SELECT 1 FROM conversations p
        WHERE p.id = message_recipients.conversation_id AND p.org_id = (SELECT confide_org())))
    WITH CHECK ((SELECT confide_system_scope()) OR EXISTS (
        SELECT 1 FROM conversations p
        WHERE p.id = message_recipients.conversation_id AND p.org_id = (SELECT confide_org())));
CREATE POLICY org_isolation ON attachment_chunks
    USING ((SELECT confide_system_scope()) OR EXISTS (
        SELECT 1 FROM attachments p
        WHERE p.id = attachment_chunks.attachment_id AND p.org_id = (SELECT confide_org())))
    WITH CHECK ((SELECT confide_system_scope()) OR EXISTS (
        SELECT 1 FROM attachments p
        WHERE p.id = attachment_chunks.attachment_id AND p.org_id = (SELECT confide_org())));
CREATE POLICY org_isolation ON note_envelopes
    USING ((SELECT confide_system_scope()) OR EXISTS (
        SELECT 1 FROM notes p WHERE p.id = note_envelopes.note_id AND p.org_id = (SELECT confide_org())))
    WITH CHECK ((SELECT confide_system_scope()) OR EXISTS (
        SELECT 1 FROM notes p WHERE p.id = note_envelopes.note_id AND p.org_id = (SELECT confide_org())));
CREATE POLICY org_isolation ON note_readers
    USING ((SELECT confide_system_scope()) OR EXISTS (
        SELECT 1 FROM notes p WHERE p.id = note_readers.note_id AND p.org_id = (SELECT confide_org())))
    WITH CHECK ((SELECT confide_system_scope()) OR EXISTS (
        SELECT 1 FROM notes p WHERE p.id = note_readers.note_id AND p.org_id = (SELECT confide_org())));
CREATE POLICY org_isolation ON note_key_wraps
    USING ((SELECT confide_system_scope()) OR EXISTS (
        SELECT 1 FROM notes p WHERE p.id = note_key_wraps.note_id AND p.org_id = (SELECT confide_org())))
    WITH CHECK ((SELECT confide_system_scope()) OR EXISTS (
        SELECT 1 FROM notes p WHERE p.id = note_key_wraps.note_id AND p.org_id = (SELECT confide_org())));
ALTER TABLE recovery_codes ENABLE ROW LEVEL SECURITY;
ALTER TABLE message_recipients ENABLE ROW LEVEL SECURITY;
ALTER TABLE attachment_chunks ENABLE ROW LEVEL SECURITY;
ALTER TABLE note_envelopes ENABLE ROW LEVEL SECURITY;
ALTER TABLE note_readers ENABLE ROW LEVEL SECURITY;
ALTER TABLE note_key_wraps ENABLE ROW LEVEL SECURITY;

-- ------------------------------------------------------------------ what is not protected, and why
-- Every table either has row-level security or a row here; a test holds later
-- migrations to the same (tests/integration/test_row_level_security.py).
CREATE TABLE row_security_exclusions (
    table_name name PRIMARY KEY,
    reason     text NOT NULL CHECK (char_length(reason) BETWEEN 20 AND 1000)
);
INSERT INTO row_security_exclusions (table_name, reason) VALUES
('organizations',
 'The organizations themselves (id, slug, name): login names its organization by slug before any '
 'organization is known, and retention reads every organization''s periods. No personal data.'),
('login_throttle',
 'Failed-login counters keyed by keyed digests of (organization, email) and of the client address, '
 'kept before an organization is known; no organization column, no identifiers in clear.'),
('account_events',
 'The push outbox: ids and event kinds for one account, no organization column, no content. Written in '
 'the tenant transaction of the change it announces; read for the caller''s own account only.'),
('audit_events',
 'The verifiable audit log: events without an organization (failed logins, system work) share it, the '
 'integrator orders every organization''s events into one Merkle tree, and retention prunes across '
 'organizations. Pseudonymous ids and codes only; searches filter by organization in SQL.'),
('audit_pending', 'The integrator''s queue of the audit log (see audit_events): sequence numbers only.'),
('audit_log', 'The Merkle tree''s leaves in order (see audit_events): indexes and hashes only.'),
('audit_tree_node', 'The Merkle tree''s stored node hashes (see audit_events): hashes only.'),
('audit_tree_state', 'The Merkle tree''s single state row (see audit_events): size and root only.'),
('audit_checkpoints', 'Signed checkpoints of the whole log (see audit_events): sizes and root hashes only.'),
('audit_cosignatures', 'Witness cosignatures of checkpoints (see audit_events): signatures only.'),
('audit_addresses',
 'Raw client addresses beside audit events, kept for a short investigation window and pruned across '
 'organizations by the retention job; read only by investigations through the audit search.'),
('retention_runs', 'Records of retention runs: the job works across organizations; counts and times only.'),
('retention_run_counts',
 'Row counts per run, organization and category (organization NULL: rows without one); counts only, '
 'listed per organization by the service.'),
('retention_batches',
 'One row per committed retention or erasure batch and organization, what its audit event refers to; '
 'counts only.'),
('schema_migrations', 'Applied migrations and their checksums: no organization data.'),
('app_role_grants', 'The application role''s privileges, table by table: schema metadata.'),
('row_security_exclusions', 'This list: schema metadata.');

INSERT INTO app_role_grants (table_name, privileges) VALUES ('row_security_exclusions', 'NONE');

-- ------------------------------------------------------------------ before the organization is known
-- Four unauthenticated steps look rows up by a secret or a login name before the
-- organization is known. Each gets exactly what it needs through a SECURITY DEFINER
-- function owned by the migration owner (search_path fixed), and nothing else: no
-- listing, no other columns.

-- Login: the account with this email in the organization with this slug.
CREATE FUNCTION auth_login_account(p_slug text, p_email text)
RETURNS TABLE (id uuid, org_id uuid, email text, role text, status text, password_hash text,
               totp_secret_sealed bytea, totp_pending_sealed bytea, totp_last_step bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT a.id, a.org_id, a.email, a.role, a.status, a.password_hash,
           a.totp_secret_sealed, a.totp_pending_sealed, a.totp_last_step
    FROM accounts a JOIN organizations o ON o.id = a.org_id
    WHERE o.slug = p_slug AND lower(a.email) = lower(p_email)
$$;

-- Every authenticated request: the live session for a token digest and its account
-- (not revoked, idle and absolute expiry after p_now, account active), its activity
-- written at most every p_touch_s seconds; a clock that jumps back neither shortens nor
-- extends a session.
CREATE FUNCTION auth_session(p_digest bytea, p_now timestamptz, p_idle_s double precision, p_touch_s double precision)
RETURNS TABLE (id uuid, account_id uuid, org_id uuid, role text, mfa_satisfied boolean,
               absolute_expires_at timestamptz, email text, display_name text, mfa_enabled boolean,
               account_created_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    last_seen timestamptz;
BEGIN
    SELECT s.id, s.account_id, s.org_id, a.role, s.mfa_satisfied, s.absolute_expires_at,
           a.email, a.display_name, a.totp_enabled_at IS NOT NULL, a.created_at, s.last_seen_at
    INTO id, account_id, org_id, role, mfa_satisfied, absolute_expires_at,
         email, display_name, mfa_enabled, account_created_at, last_seen
    FROM sessions s JOIN accounts a ON a.id = s.account_id
    WHERE s.token_digest = p_digest
      AND s.revoked_at IS NULL
      AND s.idle_expires_at > p_now
      AND s.absolute_expires_at > p_now
      AND a.status = 'active';
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF last_seen <= p_now - make_interval(secs => p_touch_s) THEN
        UPDATE sessions s
           SET last_seen_at = p_now,
               idle_expires_at = LEAST(s.absolute_expires_at, p_now + make_interval(secs => p_idle_s))
         WHERE s.id = auth_session.id AND s.revoked_at IS NULL AND s.last_seen_at < p_now;
    END IF;
    RETURN NEXT;
END $$;

-- Invite redemption: lock an unused, unexpired invite by its code's digest, and enter
-- its organization for the rest of the transaction (the new account, its care
-- relationship and the invite's redemption are written there).
CREATE FUNCTION auth_claim_invite(p_digest bytea, p_now timestamptz)
RETURNS TABLE (id uuid, org_id uuid, created_by uuid)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    SELECT i.id, i.org_id, i.created_by INTO id, org_id, created_by
    FROM invites i
    WHERE i.code_digest = p_digest AND i.redeemed_at IS NULL AND i.expires_at > p_now
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM set_config('confide.org_id', org_id::text, true);
    RETURN NEXT;
END $$;

-- Only the application role may call them (confide_grant_app_role grants EXECUTE on
-- every SECURITY DEFINER function).
REVOKE ALL ON FUNCTION auth_login_account(text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION auth_session(bytea, timestamptz, double precision, double precision) FROM PUBLIC;
REVOKE ALL ON FUNCTION auth_claim_invite(bytea, timestamptz) FROM PUBLIC;

-- An erasure request's outcome, for whoever holds its receipt token: after the erasure
-- the client has no account (and no organization) to log in with.
CREATE FUNCTION erasure_request_by_receipt(p_id uuid, p_digest bytea)
RETURNS SETOF erasure_requests
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT * FROM erasure_requests WHERE id = p_id AND receipt_digest = p_digest
$$;
REVOKE ALL ON FUNCTION erasure_request_by_receipt(uuid, bytea) FROM PUBLIC;
