"""Encrypted attachments: opaque blobs uploaded and downloaded in chunks, never read."""
