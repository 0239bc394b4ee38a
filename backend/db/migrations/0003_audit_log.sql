-- 0003: the verifiable audit log (issue 6; decision records 0010 and 0011).
--
-- audit_events (0001) stays the source: the writer now stores each event's exact
-- Merkle leaf bytes (audit.leaf.encode_leaf) in the action's transaction, and the
-- database derives the RFC 9162 leaf hash from them. A trigger queues every new
-- event in audit_pending. One integrator at a time (whoever holds the row lock on
-- audit_tree_state) moves queued events into audit_log with dense indexes taken
-- from the tree size (never a sequence), stores every complete subtree hash in
-- audit_tree_node, and signs a checkpoint. The log, node and checkpoint tables are
-- append-only for every role; the Merkle proofs and witnessed checkpoints are the
-- guarantee against a superuser, the triggers are defence in depth.

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM audit_events) THEN
        RAISE EXCEPTION 'audit_events already holds events written without leaf bytes: '
            'recreate this development database (leaves are computed once, at write time)';
    END IF;
END $$;

ALTER TABLE audit_events
    ADD COLUMN leaf bytea NOT NULL CHECK (octet_length(leaf) BETWEEN 2 AND 4096),
    ADD COLUMN leaf_hash bytea NOT NULL GENERATED ALWAYS AS (sha256('\x00'::bytea || leaf)) STORED;
-- Keyset pagination of an organization's events, newest first.
CREATE INDEX audit_events_org_seq_idx ON audit_events (org_id, seq);

-- Events written but not yet in the log. A queue: the integrator deletes what it took.
CREATE TABLE audit_pending (
    event_seq bigint PRIMARY KEY REFERENCES audit_events (seq)
);

CREATE FUNCTION audit_events_enqueue() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_pending (event_seq) VALUES (NEW.seq);
    RETURN NULL;
END $$;

CREATE TRIGGER audit_events_enqueue
    AFTER INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_enqueue();
ALTER TABLE audit_events ENABLE ALWAYS TRIGGER audit_events_enqueue;

-- The log: leaf index -> event. Level 0 of the tree is leaf_hash.
CREATE TABLE audit_log (
    idx        bigint PRIMARY KEY CHECK (idx >= 0),
    event_seq  bigint NOT NULL UNIQUE REFERENCES audit_events (seq),
    leaf_hash  bytea NOT NULL CHECK (octet_length(leaf_hash) = 32)
);

-- Every complete subtree of level >= 1, written once.
CREATE TABLE audit_tree_node (
    level  smallint NOT NULL CHECK (level BETWEEN 1 AND 63),
    idx    bigint NOT NULL CHECK (idx >= 0),
    hash   bytea NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (level, idx)
);

-- Signed checkpoints (C2SP tlog-checkpoint notes signed by the log key).
CREATE TABLE audit_checkpoints (
    size        bigint PRIMARY KEY CHECK (size >= 0),
    root        bytea NOT NULL CHECK (octet_length(root) = 32),
    note        text NOT NULL CHECK (octet_length(note) <= 65536),
    created_at  timestamptz NOT NULL
);

-- Witness cosignatures (C2SP tlog-cosignature) on stored checkpoints.
CREATE TABLE audit_cosignatures (
    checkpoint_size bigint NOT NULL REFERENCES audit_checkpoints (size),
    witness_key     text NOT NULL CHECK (char_length(witness_key) BETWEEN 1 AND 512),
    signature_line  text NOT NULL CHECK (char_length(signature_line) BETWEEN 1 AND 1024),
    cosigned_at     bigint NOT NULL CHECK (cosigned_at >= 0),
    received_at     timestamptz NOT NULL,
    PRIMARY KEY (checkpoint_size, witness_key)
);

-- The one row the integrator locks (SELECT ... FOR UPDATE): its holder is the leader
-- for that batch. size and the compact range (right-edge subtree hashes, largest
-- first) are all it needs to append; root is the latest signed root.
CREATE TABLE audit_tree_state (
    id          smallint PRIMARY KEY CHECK (id = 1),
    size        bigint NOT NULL CHECK (size >= 0),
    compact     bytea[] NOT NULL,
    root        bytea NOT NULL CHECK (octet_length(root) = 32),
    updated_at  timestamptz NOT NULL
);
INSERT INTO audit_tree_state (id, size, compact, root, updated_at)
VALUES (1, 0, '{}', sha256(''::bytea), now());

-- Append-only, for every role and even under session_replication_role = replica.
CREATE FUNCTION audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_tree_node_no_update_delete BEFORE UPDATE OR DELETE ON audit_tree_node
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_tree_node_no_truncate BEFORE TRUNCATE ON audit_tree_node
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_checkpoints_no_update_delete BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_cosignatures_no_update_delete BEFORE UPDATE OR DELETE ON audit_cosignatures
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_cosignatures_no_truncate BEFORE TRUNCATE ON audit_cosignatures
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
ALTER TABLE audit_log ENABLE ALWAYS TRIGGER audit_log_no_update_delete;
ALTER TABLE audit_log ENABLE ALWAYS TRIGGER audit_log_no_truncate;
ALTER TABLE audit_tree_node ENABLE ALWAYS TRIGGER audit_tree_node_no_update_delete;
ALTER TABLE audit_tree_node ENABLE ALWAYS TRIGGER audit_tree_node_no_truncate;
ALTER TABLE audit_checkpoints ENABLE ALWAYS TRIGGER audit_checkpoints_no_update_delete;
ALTER TABLE audit_checkpoints ENABLE ALWAYS TRIGGER audit_checkpoints_no_truncate;
ALTER TABLE audit_cosignatures ENABLE ALWAYS TRIGGER audit_cosignatures_no_update_delete;
ALTER TABLE audit_cosignatures ENABLE ALWAYS TRIGGER audit_cosignatures_no_truncate;

-- The tree state only moves forward, one batch at a time, and never shrinks.
CREATE FUNCTION audit_tree_state_forward() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE' OR NEW.size < OLD.size THEN
        RAISE EXCEPTION 'audit_tree_state only grows: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_tree_state_forward BEFORE UPDATE OR DELETE ON audit_tree_state
    FOR EACH ROW EXECUTE FUNCTION audit_tree_state_forward();
CREATE TRIGGER audit_tree_state_no_truncate BEFORE TRUNCATE ON audit_tree_state
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
ALTER TABLE audit_tree_state ENABLE ALWAYS TRIGGER audit_tree_state_forward;
ALTER TABLE audit_tree_state ENABLE ALWAYS TRIGGER audit_tree_state_no_truncate;
