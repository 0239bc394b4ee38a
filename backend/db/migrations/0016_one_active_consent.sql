-- 0016: at most one active consent per (client, grantee, purpose) (checklist F-06).
--
-- A client's consent to one grantee for one purpose is one register: a new grant while
-- one is active would leave two consents of which revoking either does not end the
-- access the other still gives, and the audit event of an access could name either.
-- A client who wants other scopes or another period revokes and grants again.
-- The service refuses a second grant with a 409 (and records the expiry of one whose
-- validity has passed but that the sweep has not ended yet, first); this partial unique
-- index is what holds under concurrency: of two grants racing, the second waits for the
-- first and fails when it commits.

DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM consents WHERE status = 'active'
        GROUP BY client_id, grantee_type, grantee_id, purpose HAVING count(*) > 1
    ) THEN
        RAISE EXCEPTION 'consents holds clients with two active consents to one grantee for one purpose: '
            'have each client revoke all but one before this migration (consent events are append-only)';
    END IF;
END $$;

CREATE UNIQUE INDEX consents_one_active ON consents (client_id, grantee_type, grantee_id, purpose)
    WHERE status = 'active';
