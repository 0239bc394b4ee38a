"""Consent: client-signed grants and revocations, receipts, break-glass access."""
