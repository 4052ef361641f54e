"""What the bench scripts share for their reports: the CPU model, the machine's current speed, and
writing their section of docs/benchmarks.md."""

from __future__ import annotations

import platform
import re
import time
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def update_section(title: str, section: str, path: Path = BENCHMARKS) -> Path:
    """Replace the section headed ``title`` (up to the next ``## ``) with ``section``, or append it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if not text.strip():
        text = "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section.rstrip("\n") + "\n\n", text).rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")
    return path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or what :mod:`platform` knows elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def calibrate() -> float:
    """Nanoseconds per iteration of an empty Python loop (how fast the machine is right now)."""
    start = time.perf_counter()
    for _ in range(5_000_000):
        pass
    return (time.perf_counter() - start) / 5_000_000 * 1e9
