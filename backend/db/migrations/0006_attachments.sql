-- 0006: encrypted attachments. The server stores the client's encrypted blob as opaque
-- bytes, cut into chunks of at most 256 KiB so upload and download run in constant
-- memory; the key and the blob's BLAKE2b-256 travel inside a message envelope.

CREATE TABLE attachments (
    -- Chosen by the client: it is bound into every encrypted chunk (crypto/SPEC.md §6).
    id              uuid PRIMARY KEY,
    org_id          uuid NOT NULL,
    conversation_id uuid NOT NULL,
    uploader_id     uuid NOT NULL,
    -- Ciphertext bytes and BLAKE2b-256 of the whole blob, as checked on upload.
    size            bigint NOT NULL CHECK (size BETWEEN 0 AND 104884841),
    blake2b         bytea NOT NULL CHECK (octet_length(blake2b) = 32),
    chunk_count     integer NOT NULL CHECK (chunk_count >= 0),
    created_at      timestamptz NOT NULL,
    CONSTRAINT attachments_chunk_count CHECK (chunk_count = (size + 262143) / 262144),
    FOREIGN KEY (org_id, conversation_id) REFERENCES conversations (org_id, id),
    FOREIGN KEY (org_id, uploader_id) REFERENCES accounts (org_id, id)
);
CREATE INDEX attachments_conversation_idx ON attachments (conversation_id);

CREATE TABLE attachment_chunks (
    attachment_id uuid NOT NULL REFERENCES attachments (id),
    n             integer NOT NULL CHECK (n >= 0),
    data          bytea NOT NULL CHECK (octet_length(data) BETWEEN 1 AND 262144),
    PRIMARY KEY (attachment_id, n)
);
-- Ciphertext does not compress: store it out of line without trying.
ALTER TABLE attachment_chunks ALTER COLUMN data SET STORAGE EXTERNAL;

-- Stored blobs are never rewritten (retention may delete them).
CREATE FUNCTION attachments_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'attachments are immutable: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER attachments_no_update
    BEFORE UPDATE ON attachments
    FOR EACH ROW EXECUTE FUNCTION attachments_immutable();
ALTER TABLE attachments ENABLE ALWAYS TRIGGER attachments_no_update;
CREATE TRIGGER attachment_chunks_no_update
    BEFORE UPDATE ON attachment_chunks
    FOR EACH ROW EXECUTE FUNCTION attachments_immutable();
ALTER TABLE attachment_chunks ENABLE ALWAYS TRIGGER attachment_chunks_no_update;
