"""Describe the machine a benchmark ran on."""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys
from pathlib import Path


def describe() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = int(line.split()[1]) / 1024 / 1024
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores ({model}), {mem_gib:.0f} GiB RAM, {platform.system()} {platform.release()}, "
        f"Python {sys.version.split()[0]}; run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"
    )
