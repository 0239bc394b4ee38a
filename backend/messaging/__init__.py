"""Conversations and end-to-end encrypted messages."""
