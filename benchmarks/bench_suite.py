"""Wall time of the integration suite run serially against the same suite under ``-n 4``.

Both runs go against the same Docker engine one after the other, in one invocation, so
the ratio compares like with like; the load average in the machine block says how much
other work competed. Usage (from the repository root)::

    .venv/bin/python benchmarks/bench_suite.py [PATHS...]   # default: tests/integration
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from typing import Any

from machine import machine, write_result

SUMMARY = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)")


def run_suite(paths: list[str], workers: int | None) -> dict[str, Any]:
    """Run pytest once; wall time and the counts of its closing line."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *paths]
    if workers:
        command += ["-n", str(workers)]
    started = time.monotonic()
    finished = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
    wall = time.monotonic() - started
    last = finished.stdout.strip().splitlines()[-1] if finished.stdout.strip() else ""
    counts = {kind: int(n) for n, kind in SUMMARY.findall(last)}
    return {
        "workers": workers or 1,
        "wall_s": round(wall, 1),
        "exit_code": finished.returncode,
        "counts": counts,
    }


def main() -> int:
    paths = sys.argv[1:] or ["tests/integration"]
    serial = run_suite(paths, None)
    parallel = run_suite(paths, 4)
    result = {
        "benchmark": "bench_suite",
        "what": "wall time of the integration suite, serial vs -n 4, run back to back",
        "paths": paths,
        "serial": serial,
        "parallel_n4": parallel,
        "speedup_n4": round(serial["wall_s"] / parallel["wall_s"], 2),
        "machine": machine(),
    }
    print(json.dumps(result, indent=2))
    write_result("bench_suite", result)
    return 0 if serial["exit_code"] == parallel["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
