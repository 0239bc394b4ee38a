"""The key directory: public key bundles with their rotation chain, and key backups."""
