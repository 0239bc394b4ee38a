-- 0007: the organization's custodian key, clinical session notes (end-to-end encrypted,
-- amended never edited), who may read each note, and break-glass re-wraps.

CREATE TABLE custodian_keys (
    org_id         uuid NOT NULL REFERENCES organizations (id),
    key_version    integer NOT NULL CHECK (key_version >= 1),
    encryption_key bytea NOT NULL UNIQUE CHECK (octet_length(encryption_key) = 32),
    signing_key    bytea NOT NULL UNIQUE CHECK (octet_length(signing_key) = 32),
    bundle         bytea NOT NULL CHECK (octet_length(bundle) BETWEEN 64 AND 4096),
    fingerprint    text NOT NULL CHECK (fingerprint ~ '^[0-9]{5}( [0-9]{5}){5}$'),
    published_at   timestamptz NOT NULL,
    published_by   uuid NOT NULL,
    PRIMARY KEY (org_id, key_version),
    FOREIGN KEY (org_id, published_by) REFERENCES accounts (org_id, id)
);

CREATE TABLE notes (
    seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              uuid NOT NULL UNIQUE,
    org_id          uuid NOT NULL,
    client_id       uuid NOT NULL,
    author_id       uuid NOT NULL,
    author_key_version integer NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('note', 'note_amendment')),
    -- An amendment names the note it amends; a note names none.
    amends_id       uuid REFERENCES notes (id),
    created_at      timestamptz NOT NULL,
    CONSTRAINT notes_amendment_reference CHECK ((kind = 'note_amendment') = (amends_id IS NOT NULL)),
    FOREIGN KEY (org_id, client_id) REFERENCES accounts (org_id, id),
    FOREIGN KEY (org_id, author_id) REFERENCES accounts (org_id, id)
);
CREATE INDEX notes_client_seq_idx ON notes (client_id, seq);

-- Every envelope a note has had: version 1 as written, later versions re-issued by the
-- author only to add recipients (sharing adds wrapped keys, nothing else).
CREATE TABLE note_envelopes (
    note_id    uuid NOT NULL REFERENCES notes (id),
    version    integer NOT NULL CHECK (version >= 1),
    envelope   bytea NOT NULL CHECK (octet_length(envelope) <= 3145728),
    envelope_sha256 bytea NOT NULL CHECK (octet_length(envelope_sha256) = 32),
    created_at timestamptz NOT NULL,
    PRIMARY KEY (note_id, version)
);

-- Who may fetch a note, and why.
CREATE TABLE note_readers (
    note_id    uuid NOT NULL REFERENCES notes (id),
    account_id uuid NOT NULL REFERENCES accounts (id),
    via        text NOT NULL CHECK (via IN ('author', 'recipient', 'share', 'emergency')),
    added_at   timestamptz NOT NULL,
    PRIMARY KEY (note_id, account_id)
);
CREATE INDEX note_readers_account_idx ON note_readers (account_id);

-- Break-glass: the custodian's re-wrap of a note's content key for one clinician.
CREATE TABLE note_key_wraps (
    note_id             uuid NOT NULL REFERENCES notes (id),
    emergency_access_id uuid NOT NULL REFERENCES emergency_access (id),
    account_id          uuid NOT NULL REFERENCES accounts (id),
    key_version         integer NOT NULL,
    wrapped_key         bytea NOT NULL CHECK (octet_length(wrapped_key) = 80),
    created_at          timestamptz NOT NULL,
    PRIMARY KEY (note_id, emergency_access_id)
);

-- Notes and their envelopes are records: never rewritten.
CREATE FUNCTION notes_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is immutable: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER notes_no_update BEFORE UPDATE ON notes
    FOR EACH ROW EXECUTE FUNCTION notes_immutable();
CREATE TRIGGER note_envelopes_no_update BEFORE UPDATE ON note_envelopes
    FOR EACH ROW EXECUTE FUNCTION notes_immutable();
ALTER TABLE notes ENABLE ALWAYS TRIGGER notes_no_update;
ALTER TABLE note_envelopes ENABLE ALWAYS TRIGGER note_envelopes_no_update;
