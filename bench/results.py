"""Appending a run's figures to bench/RESULTS.md, with the command and the machine."""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def append(lines: list[str]) -> None:
    """Append ``lines`` under a heading naming the script, its arguments, the machine and its load."""
    script = Path(sys.argv[0]).name
    head = (f"\n## {script} — {dt.date.today().isoformat()}\n\n"
            f"`python bench/{script} {' '.join(sys.argv[1:])}` on {platform.node()} "
            f"({os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, Python {platform.python_version()}; "
            f"load average {os.getloadavg()[0]:.1f} while measuring — the cores are shared)\n\n")
    with open(RESULTS, "a") as f:
        f.write(head + "\n".join(lines) + "\n")


def append_result(title: str, command: str, body: str) -> None:
    """Append a section to bench/RESULTS.md: the title and date, the command, the machine with the
    load average now (the cores are shared), then ``body`` (its lines, each ending in a newline)."""
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    with open(RESULTS, "a") as fh:
        fh.write(f"\n## {title} — {dt.date.today().isoformat()}\n\n"
                 f"- command: `{command}`\n"
                 f"- machine: {platform.machine()}, Python {platform.python_version()}, load average {load} "
                 f"(cores shared with other work)\n" + body)
