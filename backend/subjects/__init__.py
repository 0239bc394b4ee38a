"""Data-subject rights: the export of everything held about a person (GDPR Art. 15, 20)."""

from backend.subjects.service import MEDIA_TYPE, open_export

__all__ = ["MEDIA_TYPE", "open_export"]
