-- 0014: access changes by an organization's admins (checklist A-06b, A-10).
--
-- An admin changes a staff member's role or disables (and re-enables) an account
-- (backend.accounts.access). The service checks every rule first and answers with a
-- problem document; the database holds the ones a bug or a race must not break:
--
-- * an organization keeps at least one active admin (a constraint trigger that
--   serializes its organization's admin changes, so two admins demoting or disabling
--   each other at the same moment cannot both succeed);
-- * a role change revokes the account's sessions with its own reason;
-- * only clients and clinicians take part in conversations: a clinician moved to
--   another role must have left every conversation first (the service removes them
--   in the same transaction, so the other members stop encrypting to them);
-- * an invite is redeemed only while its issuer is still an active clinician (a
--   clinician who was disabled or moved to another role no longer brings in clients).

-- ------------------------------------------------------------------ sessions
ALTER TABLE sessions DROP CONSTRAINT sessions_revoked_reason_check;
ALTER TABLE sessions ADD CONSTRAINT sessions_revoked_reason_check CHECK (
    revoked_reason IN ('logout', 'logout_all', 'password_change', 'account_disabled', 'mfa_change',
                       'erasure', 'role_change'));

-- ------------------------------------------------------------------ the last admin
-- Fires when an active admin stops being one (demoted, disabled, erased or deleted).
-- The transaction-scoped advisory lock (key: the organization, seed 0x61646D6E "admn")
-- makes a second such change in the same organization wait for the first to end; the
-- count then runs on a fresh snapshot (READ COMMITTED: each statement of the function
-- takes one) and sees the first change if it committed. The service takes the same
-- lock before it checks (backend.accounts.repository.lock_admins).
CREATE FUNCTION accounts_keep_an_admin() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.role <> 'admin' OR OLD.status <> 'active' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.role = 'admin' AND NEW.status = 'active' THEN
        RETURN NULL;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtextextended(OLD.org_id::text, 1633971566));
    IF NOT EXISTS (
        SELECT 1 FROM accounts a
        WHERE a.org_id = OLD.org_id AND a.role = 'admin' AND a.status = 'active'
    ) THEN
        RAISE EXCEPTION 'an organization keeps at least one active admin'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'accounts_last_admin';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER accounts_keep_an_admin
    AFTER UPDATE OF role, status OR DELETE ON accounts
    FOR EACH ROW EXECUTE FUNCTION accounts_keep_an_admin();
ALTER TABLE accounts ENABLE ALWAYS TRIGGER accounts_keep_an_admin;

-- ------------------------------------------------------------------ conversations
CREATE FUNCTION accounts_role_leaves_conversations() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.role NOT IN ('client', 'clinician') AND OLD.role IN ('client', 'clinician')
       AND EXISTS (SELECT 1 FROM conversation_members m
                   WHERE m.account_id = NEW.id AND m.status <> 'removed') THEN
        RAISE EXCEPTION 'only clients and clinicians take part in conversations'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'accounts_role_conversations';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER accounts_role_leaves_conversations
    AFTER UPDATE OF role ON accounts
    FOR EACH ROW WHEN (OLD.role IS DISTINCT FROM NEW.role)
    EXECUTE FUNCTION accounts_role_leaves_conversations();
ALTER TABLE accounts ENABLE ALWAYS TRIGGER accounts_role_leaves_conversations;

-- ------------------------------------------------------------------ invites
-- As in 0013, plus: the issuer is still an active clinician. An invite of someone who
-- no longer is looks like any other invalid code (the caller learns nothing more).
CREATE OR REPLACE FUNCTION auth_claim_invite(p_digest bytea, p_now timestamptz)
RETURNS TABLE (id uuid, org_id uuid, created_by uuid)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    SELECT i.id, i.org_id, i.created_by INTO id, org_id, created_by
    FROM invites i JOIN accounts issuer ON issuer.id = i.created_by
    WHERE i.code_digest = p_digest AND i.redeemed_at IS NULL AND i.expires_at > p_now
      AND issuer.role = 'clinician' AND issuer.status = 'active'
    FOR UPDATE OF i;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM set_config('confide.org_id', org_id::text, true);
    RETURN NEXT;
END $$;
