-- 0017: a conversation holds at most 256 members (invited or active).
--
-- Every message is sealed to the current key of each member, and an envelope carries
-- at most 256 recipients (crypto/public/limits.py MAX_RECIPIENTS; crypto/SPEC.md). A
-- larger conversation could never receive a message. The service refuses the 257th
-- member with 422; this trigger is the backstop. It takes the conversation row FOR NO
-- KEY UPDATE first, so concurrent additions count one after another; sends (which hold
-- only KEY SHARE on the row, through their foreign key) never wait for it.

CREATE FUNCTION conversation_members_cap() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM conversations WHERE id = NEW.conversation_id FOR NO KEY UPDATE;
    IF (SELECT count(*) FROM conversation_members
        WHERE conversation_id = NEW.conversation_id AND status <> 'removed') > 256 THEN
        RAISE EXCEPTION 'a conversation holds at most 256 members'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'conversation_members_cap';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER conversation_members_cap
    AFTER INSERT OR UPDATE OF status ON conversation_members
    FOR EACH ROW WHEN (NEW.status <> 'removed')
    EXECUTE FUNCTION conversation_members_cap();
ALTER TABLE conversation_members ENABLE ALWAYS TRIGGER conversation_members_cap;
