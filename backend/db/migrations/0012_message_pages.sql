-- Message pages and sends that cost the same at the 10th and the 100,000th message.
--
-- A recipient's page was a join of the conversation's messages with the recipient's
-- rows; a prepared statement's generic plan could pick a bitmap scan of the whole
-- conversation and a sort (every page then reads every message). The recipient rows
-- now carry the conversation, and their primary key (account, conversation, seq) is
-- the page, in order.
ALTER TABLE message_recipients ADD COLUMN conversation_id uuid;
UPDATE message_recipients r SET conversation_id = m.conversation_id
FROM messages m WHERE m.seq = r.message_seq;
ALTER TABLE message_recipients ALTER COLUMN conversation_id SET NOT NULL;

-- The recipient row names the message's own conversation, never another one.
ALTER TABLE messages ADD CONSTRAINT messages_conversation_seq_key UNIQUE (conversation_id, seq);
DROP INDEX messages_conversation_seq_idx;
ALTER TABLE message_recipients DROP CONSTRAINT message_recipients_message_seq_fkey;
ALTER TABLE message_recipients ADD CONSTRAINT message_recipients_message_fkey
    FOREIGN KEY (conversation_id, message_seq) REFERENCES messages (conversation_id, seq);
ALTER TABLE message_recipients DROP CONSTRAINT message_recipients_pkey;
ALTER TABLE message_recipients ADD PRIMARY KEY (account_id, conversation_id, message_seq);

-- Envelopes are ciphertext: compressing them is wasted work. Rows up to a page stay
-- inline (a page of messages is then one heap read per message, no TOAST lookups);
-- larger envelopes go out of line uncompressed.
ALTER TABLE messages ALTER COLUMN envelope SET STORAGE EXTERNAL;
ALTER TABLE messages SET (toast_tuple_target = 8160);
