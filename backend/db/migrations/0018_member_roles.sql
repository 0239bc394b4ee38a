-- 0018: only clients and clinicians are members of a conversation, also under races.
--
-- 0014 refuses a role change for an account that is still a member. The other order is
-- held here: adding (or re-activating) a member reads the account's role FOR SHARE, so
-- an addition racing a role change either waits for it and sees the new role, or makes
-- the role change wait and then find the membership (which it removes first). Without
-- this, an admin could end up an active member, and every later message would be sealed
-- to them.

CREATE FUNCTION conversation_members_role() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    member_role text;
BEGIN
    SELECT role INTO member_role FROM accounts WHERE id = NEW.account_id FOR SHARE;
    IF member_role IS NOT NULL AND member_role NOT IN ('client', 'clinician') THEN
        RAISE EXCEPTION 'only clients and clinicians take part in conversations'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'conversation_members_role';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER conversation_members_role
    BEFORE INSERT OR UPDATE OF status ON conversation_members
    FOR EACH ROW WHEN (NEW.status <> 'removed')
    EXECUTE FUNCTION conversation_members_role();
ALTER TABLE conversation_members ENABLE ALWAYS TRIGGER conversation_members_role;
