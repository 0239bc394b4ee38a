"""Retention: policies per data category, legal holds, and the job that deletes what is due."""

from backend.retention.job import RUN_LOCK_KEY, RetentionBusyError, RunReport, run_retention
from backend.retention.scheduler import RetentionScheduler
from backend.retention.schemas import CATEGORIES

__all__ = [
    "CATEGORIES",
    "RUN_LOCK_KEY",
    "RetentionBusyError",
    "RetentionScheduler",
    "RunReport",
    "run_retention",
]
