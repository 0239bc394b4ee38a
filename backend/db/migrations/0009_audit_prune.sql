-- 0009: pruning for retention. After its retention period an integrated event's leaf
-- bytes may be removed; its hash stays in audit_log (and in every node above it), so
-- the tree, its checkpoints and every other proof still verify. Nothing else about an
-- event ever changes: the append-only trigger allows exactly this one update.

ALTER TABLE audit_events
    ALTER COLUMN leaf DROP NOT NULL,
    ALTER COLUMN leaf_hash DROP NOT NULL,
    ADD COLUMN pruned_at timestamptz,
    ADD CONSTRAINT audit_events_pruned_consistent CHECK ((leaf IS NULL) = (pruned_at IS NOT NULL));

CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
       AND OLD.leaf IS NOT NULL AND NEW.leaf IS NULL AND NEW.pruned_at IS NOT NULL
       AND (to_jsonb(NEW) - 'leaf' - 'leaf_hash' - 'pruned_at') = (to_jsonb(OLD) - 'leaf' - 'leaf_hash' - 'pruned_at')
       AND EXISTS (SELECT 1 FROM audit_log WHERE event_seq = OLD.seq) THEN
        RETURN NEW;  -- pruning an integrated leaf: its hash is kept in audit_log
    END IF;
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
