-- 0005: conversations, members, end-to-end encrypted messages, delivery state,
-- the per-account event outbox behind the push stream, and encrypted attachments.

CREATE TABLE conversations (
    id         uuid PRIMARY KEY,
    org_id     uuid NOT NULL REFERENCES organizations (id),
    kind       text NOT NULL CHECK (kind IN ('direct', 'care_team', 'support_group')),
    -- The client a direct conversation or a care team is about; none for a support group.
    client_id  uuid,
    created_by uuid NOT NULL,
    created_at timestamptz NOT NULL,
    CONSTRAINT conversations_client_by_kind CHECK ((kind = 'support_group') = (client_id IS NULL)),
    FOREIGN KEY (org_id, client_id) REFERENCES accounts (org_id, id),
    FOREIGN KEY (org_id, created_by) REFERENCES accounts (org_id, id),
    UNIQUE (org_id, id)
);

CREATE TABLE conversation_members (
    conversation_id uuid NOT NULL,
    org_id          uuid NOT NULL,
    account_id      uuid NOT NULL,
    -- 'invited' (a support-group client who has not joined yet), 'active', 'removed'.
    status          text NOT NULL CHECK (status IN ('invited', 'active', 'removed')),
    -- In a support group, other clients see a client only under this name.
    pseudonym       text CHECK (char_length(pseudonym) BETWEEN 1 AND 64),
    added_by        uuid NOT NULL,
    added_at        timestamptz NOT NULL,
    joined_at       timestamptz,
    removed_at      timestamptz,
    PRIMARY KEY (conversation_id, account_id),
    FOREIGN KEY (org_id, conversation_id) REFERENCES conversations (org_id, id),
    FOREIGN KEY (org_id, account_id) REFERENCES accounts (org_id, id),
    CONSTRAINT conversation_members_removed CHECK ((status = 'removed') = (removed_at IS NOT NULL))
);
CREATE INDEX conversation_members_account_idx ON conversation_members (account_id) WHERE status = 'active';

CREATE TABLE messages (
    seq               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id                uuid NOT NULL UNIQUE,
    conversation_id   uuid NOT NULL,
    org_id            uuid NOT NULL,
    sender_id         uuid NOT NULL,
    sender_key_version integer NOT NULL,
    kind              text NOT NULL CHECK (kind IN ('message', 'message_edit', 'message_delete', 'attachment_key')),
    references_id     uuid REFERENCES messages (id),
    -- The verified envelope exactly as the client sent it (canonical JSON), and its digest
    -- for idempotent retries.
    envelope          bytea NOT NULL CHECK (octet_length(envelope) <= 3145728),
    envelope_sha256   bytea NOT NULL CHECK (octet_length(envelope_sha256) = 32),
    created_at        timestamptz NOT NULL,
    CONSTRAINT messages_reference_by_kind CHECK ((kind IN ('message_edit', 'message_delete')) = (references_id IS NOT NULL)),
    FOREIGN KEY (org_id, conversation_id) REFERENCES conversations (org_id, id),
    FOREIGN KEY (org_id, sender_id) REFERENCES accounts (org_id, id)
);
CREATE INDEX messages_conversation_seq_idx ON messages (conversation_id, seq);

-- A message row is never rewritten: edits and deletions are new envelopes that reference it.
CREATE FUNCTION messages_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'messages are immutable: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER messages_no_update
    BEFORE UPDATE ON messages
    FOR EACH ROW EXECUTE FUNCTION messages_immutable();
ALTER TABLE messages ENABLE ALWAYS TRIGGER messages_no_update;

-- Who may fetch a message: exactly the accounts whose keys it was encrypted to, with
-- their delivery and read state.
CREATE TABLE message_recipients (
    message_seq  bigint NOT NULL REFERENCES messages (seq),
    account_id   uuid NOT NULL REFERENCES accounts (id),
    delivered_at timestamptz,
    read_at      timestamptz,
    PRIMARY KEY (account_id, message_seq)
);
CREATE INDEX message_recipients_message_idx ON message_recipients (message_seq);

-- The push stream's outbox: ids and metadata only, per account, resumable by id.
CREATE TABLE account_events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id uuid NOT NULL REFERENCES accounts (id),
    kind       text NOT NULL CHECK (kind ~ '^[a-z][a-z_.]{1,63}$'),
    -- Ids and codes only (conversation id, message id, ...), never content.
    payload    jsonb NOT NULL CHECK (octet_length(payload::text) <= 1024),
    created_at timestamptz NOT NULL
);
CREATE INDEX account_events_account_idx ON account_events (account_id, id);
