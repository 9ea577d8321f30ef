"""What every benchmark records beside its numbers: the machine block and the result file.

A number is never read without its machine, and the machine is shared, so the block
carries the load average too: a high load means other work competed for the cores.
The benchmarks import this module from their own folder (``from machine import ...``).
"""

from __future__ import annotations

import json
import os
import platform
import resource
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine(broker: Any = None) -> dict[str, Any]:
    """The machine block of a result file, with the version of ``broker`` (a mosquitto
    process) when the benchmark measured against one."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "mosquitto": broker.version() if broker is not None else "",
        "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }


def write_result(name: str, data: dict[str, Any]) -> Path:
    """Write ``data`` to benchmarks/results/NAME.json, as the committed results are."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            return next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        return "unknown"


def _memory_gib() -> float:
    try:
        with open("/proc/meminfo", encoding="utf-8") as info:
            kib = int(next(line.split()[1] for line in info if line.startswith("MemTotal")))
    except (OSError, StopIteration):
        return 0.0
    return round(kib / 2**20, 1)
