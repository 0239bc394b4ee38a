-- 0015: the key log, for key transparency (C-11; decision record
-- docs/decisions/0015-key-transparency.md).
--
-- Every published key bundle becomes a leaf of a second RFC 9162 Merkle log, beside
-- the audit log and built the same way: dense indexes taken from the tree size, every
-- complete subtree stored, a signed checkpoint (its own origin and key) per change. A
-- trigger queues each new bundle in key_log_pending (so no bundle can skip the log);
-- the service that publishes a bundle integrates the queue in the same transaction,
-- holding the lock on key_log_state, so a committed bundle is in a signed checkpoint.
-- Bundles published before this migration are queued here and integrated when the
-- service starts.
--
-- A leaf is audit.keylog.encode_key_leaf: 99 bytes binding an account, a key version
-- and crypto.public.bundle_digest of the bundle (no key material, no personal data).
-- The log's tables are append-only for every role; as for the audit log, the Merkle
-- proofs and the clients' gossip of signed checkpoints are the guarantee against a
-- superuser, the triggers are defence in depth.

-- Bundles waiting for the log: a copy of the stored bundle (public keys only), deleted
-- once its leaf is in the log.
CREATE TABLE key_log_pending (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  uuid NOT NULL,
    key_version integer NOT NULL CHECK (key_version >= 1),
    bundle      bytea NOT NULL CHECK (octet_length(bundle) BETWEEN 64 AND 4096),
    UNIQUE (account_id, key_version)
);

CREATE FUNCTION key_bundles_enqueue() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO key_log_pending (account_id, key_version, bundle)
    VALUES (NEW.account_id, NEW.key_version, NEW.bundle);
    RETURN NULL;
END $$;

CREATE TRIGGER key_bundles_enqueue
    AFTER INSERT ON key_bundles
    FOR EACH ROW EXECUTE FUNCTION key_bundles_enqueue();
ALTER TABLE key_bundles ENABLE ALWAYS TRIGGER key_bundles_enqueue;

INSERT INTO key_log_pending (account_id, key_version, bundle)
SELECT account_id, key_version, bundle FROM key_bundles
ORDER BY published_at, account_id, key_version;

-- The log: leaf index -> (account, key version) and the exact leaf bytes. The leaf's
-- fixed prefix (domain and format version) and the account and version inside it are
-- checked against the columns. One leaf per account key version: a second one is what
-- a client reports as a conflict, and the database refuses it.
CREATE TABLE key_log (
    idx         bigint PRIMARY KEY CHECK (idx >= 0),
    account_id  uuid NOT NULL,
    key_version integer NOT NULL CHECK (key_version >= 1),
    leaf        bytea NOT NULL CHECK (
        octet_length(leaf) = 99
        AND substring(leaf FROM 1 FOR 35)
            = '\x00000017636f6e666964652f76312f6b65792d6c6f672d6c6561660000000400000001'::bytea
        AND substring(leaf FROM 36 FOR 4) = '\x00000010'::bytea
        AND substring(leaf FROM 40 FOR 16) = uuid_send(account_id)
        AND substring(leaf FROM 56 FOR 8) = '\x00000004'::bytea || int4send(key_version)
        AND substring(leaf FROM 64 FOR 4) = '\x00000020'::bytea
    ),
    leaf_hash   bytea NOT NULL GENERATED ALWAYS AS (sha256('\x00'::bytea || leaf)) STORED,
    logged_at   timestamptz NOT NULL,
    UNIQUE (account_id, key_version)
);

-- Every complete subtree of level >= 1, written once.
CREATE TABLE key_log_tree_node (
    level  smallint NOT NULL CHECK (level BETWEEN 1 AND 63),
    idx    bigint NOT NULL CHECK (idx >= 0),
    hash   bytea NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (level, idx)
);

-- Signed checkpoints (C2SP tlog-checkpoint notes signed by the key log's own key).
CREATE TABLE key_log_checkpoints (
    size        bigint PRIMARY KEY CHECK (size >= 0),
    root        bytea NOT NULL CHECK (octet_length(root) = 32),
    note        text NOT NULL CHECK (octet_length(note) <= 65536),
    created_at  timestamptz NOT NULL
);

-- The one row whose lock serializes appends: size, compact range, latest root.
CREATE TABLE key_log_state (
    id          smallint PRIMARY KEY CHECK (id = 1),
    size        bigint NOT NULL CHECK (size >= 0),
    compact     bytea[] NOT NULL,
    root        bytea NOT NULL CHECK (octet_length(root) = 32),
    updated_at  timestamptz NOT NULL
);
INSERT INTO key_log_state (id, size, compact, root, updated_at)
VALUES (1, 0, '{}', sha256(''::bytea), now());

-- Append-only for every role (the functions of 0003).
CREATE TRIGGER key_log_no_update_delete BEFORE UPDATE OR DELETE ON key_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER key_log_no_truncate BEFORE TRUNCATE ON key_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER key_log_tree_node_no_update_delete BEFORE UPDATE OR DELETE ON key_log_tree_node
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER key_log_tree_node_no_truncate BEFORE TRUNCATE ON key_log_tree_node
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER key_log_checkpoints_no_update_delete BEFORE UPDATE OR DELETE ON key_log_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER key_log_checkpoints_no_truncate BEFORE TRUNCATE ON key_log_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER key_log_state_forward BEFORE UPDATE OR DELETE ON key_log_state
    FOR EACH ROW EXECUTE FUNCTION audit_tree_state_forward();
CREATE TRIGGER key_log_state_no_truncate BEFORE TRUNCATE ON key_log_state
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
ALTER TABLE key_log ENABLE ALWAYS TRIGGER key_log_no_update_delete;
ALTER TABLE key_log ENABLE ALWAYS TRIGGER key_log_no_truncate;
ALTER TABLE key_log_tree_node ENABLE ALWAYS TRIGGER key_log_tree_node_no_update_delete;
ALTER TABLE key_log_tree_node ENABLE ALWAYS TRIGGER key_log_tree_node_no_truncate;
ALTER TABLE key_log_checkpoints ENABLE ALWAYS TRIGGER key_log_checkpoints_no_update_delete;
ALTER TABLE key_log_checkpoints ENABLE ALWAYS TRIGGER key_log_checkpoints_no_truncate;
ALTER TABLE key_log_state ENABLE ALWAYS TRIGGER key_log_state_forward;
ALTER TABLE key_log_state ENABLE ALWAYS TRIGGER key_log_state_no_truncate;

-- The application role: append to the log, move the state forward, drain the queue.
INSERT INTO app_role_grants (table_name, privileges) VALUES
    ('key_log_pending', 'SELECT, INSERT, DELETE'),
    ('key_log', 'SELECT, INSERT'),
    ('key_log_tree_node', 'SELECT, INSERT'),
    ('key_log_checkpoints', 'SELECT, INSERT'),
    ('key_log_state', 'SELECT, UPDATE');

INSERT INTO row_security_exclusions (table_name, reason) VALUES
('key_log_pending',
 'Key bundles (public keys) waiting for the key log: the log orders every organization''s bundles '
 'into one Merkle tree, so that clients of any organization gossip one history. Drained at once.'),
('key_log', 'The key log''s leaves in order (see key_log_pending): account ids, versions and hashes only.'),
('key_log_tree_node', 'The key log''s stored node hashes (see key_log_pending): hashes only.'),
('key_log_checkpoints', 'Signed checkpoints of the whole key log (see key_log_pending): sizes and roots.'),
('key_log_state', 'The key log''s single state row (see key_log_pending): size and root only.');
