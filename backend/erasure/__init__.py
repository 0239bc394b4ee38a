"""Erasure of a data subject (GDPR Art. 17): requests, review, and carrying it out."""

from backend.erasure.executor import execute, execute_due
from backend.erasure.service import decide, file_request, outcome

__all__ = ["decide", "execute", "execute_due", "file_request", "outcome"]
