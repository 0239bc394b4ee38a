-- 0008: least privilege for the application's database role.
--
-- Migrations run as the schema owner; the service should connect as a separate role
-- with only the privileges it needs (deploy/postgres/roles.sql creates both roles and
-- calls this function after migrating). Append-only tables get INSERT and SELECT only;
-- no role gets TRUNCATE, REFERENCES or TRIGGER anywhere. The append-only triggers stay
-- as a second fence; the Merkle proofs and witnessed checkpoints are the guarantee.

CREATE FUNCTION confide_grant_app_role(app_role name) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    append_only constant text[] := ARRAY[
        'audit_events', 'audit_log', 'audit_tree_node', 'audit_checkpoints', 'audit_cosignatures',
        'consent_events', 'messages', 'notes', 'note_envelopes', 'attachments', 'attachment_chunks'
    ];
    -- Tables the service changes in place (with the rows' own invariants in triggers).
    mutable constant text[] := ARRAY[
        'organizations', 'accounts', 'recovery_codes', 'sessions', 'login_throttle', 'invites',
        'care_relationships', 'audit_addresses', 'key_bundles', 'key_backups', 'audit_pending',
        'audit_tree_state', 'consents', 'emergency_access', 'conversations', 'conversation_members',
        'message_recipients', 'account_events', 'custodian_keys', 'note_readers', 'note_key_wraps',
        'schema_migrations'
    ];
    t text;
BEGIN
    EXECUTE format('REVOKE ALL ON ALL TABLES IN SCHEMA public FROM %I', app_role);
    EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', app_role);
    FOREACH t IN ARRAY append_only LOOP
        EXECUTE format('GRANT SELECT, INSERT ON %I TO %I', t, app_role);
    END LOOP;
    FOREACH t IN ARRAY mutable LOOP
        IF t = 'schema_migrations' THEN
            EXECUTE format('GRANT SELECT ON %I TO %I', t, app_role);  -- readiness checks only
        ELSE
            EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO %I', t, app_role);
        END IF;
    END LOOP;
    -- Retention may prune an integrated event's leaf bytes (and only that: see 0009).
    IF EXISTS (SELECT 1 FROM information_schema.columns
               WHERE table_name = 'audit_events' AND column_name = 'pruned_at') THEN
        EXECUTE format('GRANT UPDATE (leaf, pruned_at) ON audit_events TO %I', app_role);
    END IF;
    -- Sequences behind identity columns.
    EXECUTE format('GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO %I', app_role);
    -- A table a later migration adds must be granted on purpose: fail loudly if one was missed.
    IF EXISTS (
        SELECT 1 FROM pg_tables
        WHERE schemaname = 'public' AND NOT (tablename = ANY (append_only || mutable))
    ) THEN
        RAISE EXCEPTION 'confide_grant_app_role: a table has no privilege decision: %',
            (SELECT string_agg(tablename, ', ') FROM pg_tables
             WHERE schemaname = 'public' AND NOT (tablename = ANY (append_only || mutable)));
    END IF;
END $$;
