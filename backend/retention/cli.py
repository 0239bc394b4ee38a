"""``confide retention run``: one run from the command line, with progress and a summary table."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TextIO

import asyncpg

from backend.auth.passwords import PasswordService
from backend.clock import SystemClock
from backend.retention.job import RetentionBusyError, RunReport, run_retention
from backend.retention.schemas import CategoryCounts
from backend.runtime import Runtime
from backend.server_keys import ServerKeys
from backend.settings import Settings

__all__ = ["format_summary", "run_command"]

_COLUMNS = ("candidates", "held", "deleted", "skipped")


class _Progress:
    """Progress on stderr: one rewritten line on a terminal, a line per category otherwise."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.live = out.isatty()

    def __call__(self, category: str, counts: CategoryCounts, done: bool) -> None:
        eligible = max(counts.candidates - counts.held, 0)
        line = f"{category:<17} {counts.deleted:>12,} of {eligible:>12,} due"
        if counts.held:
            line += f" ({counts.held:,} held)"
        if self.live:
            self.out.write("\r\x1b[K" + line + ("\n" if done else ""))
            self.out.flush()
        elif done:
            self.out.write(line + "\n")
            self.out.flush()


def format_summary(report: RunReport) -> str:
    """The summary table: categories by candidates, held, deleted, skipped."""
    header = "would delete" if report.dry_run else "deleted"
    names = [c if c != "deleted" else header for c in _COLUMNS]
    widths = [max(12, len(n)) for n in names]
    lines = [
        f"retention run {report.run_id}" + (" (dry run: nothing was deleted)" if report.dry_run else ""),
        f"{'category':<17}" + "".join(f" {n:>{w}}" for n, w in zip(names, widths, strict=True)),
    ]
    for category, counts in report.counts.items():
        values = [getattr(counts, c) for c in _COLUMNS]
        lines.append(f"{category:<17}" + "".join(f" {v:>{w},}" for v, w in zip(values, widths, strict=True)))
    lines.append(f"status: {report.status}")
    return "\n".join(lines) + "\n"


def run_command(settings: Settings, dsn: str, args: argparse.Namespace) -> int:
    """Run the job once; 0 when it completed, 1 when another run holds the lock or it failed."""

    async def run() -> int:
        runtime = Runtime(
            settings=settings,
            clock=SystemClock(),
            passwords=PasswordService(settings),
            keys=ServerKeys(settings.server_key()),
            instance_id=settings.effective_instance_id,
        )
        conn = await asyncpg.connect(dsn, server_settings={"application_name": "confide-retention"})
        try:
            report = await run_retention(
                runtime,
                conn,
                dry_run=args.dry_run,
                trigger="cli",
                batch_size=args.batch_size,
                progress=None if args.quiet else _Progress(sys.stderr),
            )
        except RetentionBusyError:
            sys.stderr.write("confide: another retention run is in progress\n")
            return 1
        finally:
            await conn.close()
            runtime.passwords.close()
        sys.stdout.write(format_summary(report))
        return 0 if report.status == "completed" else 1

    return asyncio.run(run())
