-- 0002: the key directory (public key bundles) and encrypted key backups.
-- The server holds public keys and opaque, passphrase-encrypted backups only.

CREATE TABLE key_bundles (
    account_id        uuid NOT NULL,
    org_id            uuid NOT NULL,
    key_version       integer NOT NULL CHECK (key_version >= 1),
    encryption_key    bytea NOT NULL CHECK (octet_length(encryption_key) = 32),
    signing_key       bytea NOT NULL CHECK (octet_length(signing_key) = 32),
    -- The bundle as canonical JSON (crypto.public.encode); its signatures are over the
    -- binary encoding of its fields (crypto/SPEC.md), so clients verify what they get.
    bundle            bytea NOT NULL CHECK (octet_length(bundle) BETWEEN 64 AND 4096),
    fingerprint       text NOT NULL CHECK (fingerprint ~ '^[0-9]{5}( [0-9]{5}){5}$'),
    bundle_created_at timestamptz NOT NULL,
    published_at      timestamptz NOT NULL,
    revoked_at        timestamptz,
    PRIMARY KEY (account_id, key_version),
    UNIQUE (encryption_key),
    UNIQUE (signing_key),
    FOREIGN KEY (org_id, account_id) REFERENCES accounts (org_id, id)
);

-- Versions are dense (1, 2, 3...) and a published bundle never changes; only its
-- revocation may be recorded, once.
CREATE FUNCTION key_bundles_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    latest integer;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT max(key_version) INTO latest FROM key_bundles WHERE account_id = NEW.account_id;
        IF NEW.key_version <> coalesce(latest, 0) + 1 THEN
            RAISE EXCEPTION 'key versions must be published in order'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'key_bundles_dense_versions';
        END IF;
        RETURN NEW;
    END IF;
    IF (NEW.account_id, NEW.org_id, NEW.key_version, NEW.encryption_key, NEW.signing_key, NEW.bundle,
        NEW.fingerprint, NEW.bundle_created_at, NEW.published_at)
       IS DISTINCT FROM
       (OLD.account_id, OLD.org_id, OLD.key_version, OLD.encryption_key, OLD.signing_key, OLD.bundle,
        OLD.fingerprint, OLD.bundle_created_at, OLD.published_at)
       OR (OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at) THEN
        RAISE EXCEPTION 'a published key bundle is immutable'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'key_bundles_immutable';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER key_bundles_guard
    BEFORE INSERT OR UPDATE ON key_bundles
    FOR EACH ROW EXECUTE FUNCTION key_bundles_guard();

CREATE TABLE key_backups (
    account_id  uuid PRIMARY KEY,
    org_id      uuid NOT NULL,
    revision    integer NOT NULL CHECK (revision >= 1),
    key_version integer NOT NULL,
    backup      bytea NOT NULL CHECK (octet_length(backup) BETWEEN 64 AND 4096),
    updated_at  timestamptz NOT NULL,
    FOREIGN KEY (account_id, key_version) REFERENCES key_bundles (account_id, key_version),
    FOREIGN KEY (org_id, account_id) REFERENCES accounts (org_id, id)
);
