"""What machine a benchmark ran on, printed beside its figures."""

from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_rows() -> list[tuple[str, str]]:
    """nproc (the CPUs this process may use), CPU model, Python and platform."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        ("nproc", str(cpus)),
        ("cpu", cpu_model()),
        ("python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("platform", platform.platform()),
    ]


def print_machine(
    title: str, extra: list[tuple[str, str]] | None = None, indent: str = "  "
) -> None:
    """The machine block every benchmark ends (or starts) with."""
    print(title)
    rows = [*machine_rows(), *(extra or [])]
    width = max(len(key) for key, _ in rows) + 2
    for key, value in rows:
        print(f"{indent}{key:<{width}}{value}")
