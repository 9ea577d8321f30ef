"""QuickJS bindings compared: memory bombs survived, limits offered, CPU per script call.

Each binding installs the same ``quickjs`` module, so they cannot sit in one virtualenv:
give one Python interpreter per binding (a throwaway venv each, where the project is
importable too) and this script runs everything in child processes of that interpreter:

- ``bombs``: the engine test's memory bomb (a script allocating past its 8 MiB limit)
  ``--bombs`` times, a fresh engine each time, ``--runs`` runs: how many bombs each run
  survived and how it ended (a negative exit code is the signal that killed it);
- ``cli``: ``cirque devices run`` of a model whose state script allocates without bound
  (``--cli-devices`` devices, 10 calls a second each, ``--cli-seconds``) against a local
  mosquitto: its exit code (1 with per-device script errors is the expected outcome);
- ``limits``: the limit setters the binding's ``Context`` offers;
- ``call_us``: CPU microseconds per state-script call through ``ModelEngine.run``
  (the throughput benchmark's script, median of ``--runs`` runs of ``--calls`` calls);
- ``simulator_cpu_us_per_message`` (with ``--simulator``): bench_simulator_cpu.py
  ``--script javascript`` run by that interpreter, ``--runs`` times, the bindings taking
  turns; its median, and with ``--baseline`` both costs as a ratio to the baseline's.

    .venv/bin/python benchmarks/bench_script_engines.py --python /tmp/a/bin/python \\
        --python /tmp/b/bin/python [--bombs 100] [--runs 3] [--simulator]

Prints one JSON object and writes benchmarks/results/script_engines.json (``--out``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine, write_result

from pytest_cirque.device_models.brokers import MosquittoProcess

HERE = Path(__file__).resolve().parent

INFO_CHILD = """
import json, quickjs
from pytest_cirque.device_models.engine import engine_report
fixed, detail, _ = engine_report()
names = [n for n in dir(quickjs.Context) if "limit" in n or "stack" in n or "interrupt" in n]
print(json.dumps({"engine": detail, "oom_fix_claimed": fixed, "limits": sorted(names)}))
"""

BOMB_CHILD = """
import sys
from pathlib import Path
from pytest_cirque.core.errors import ScriptError
from pytest_cirque.device_models.engine import ModelEngine
from pytest_cirque.device_models.model import load_model

model = load_model(Path(sys.argv[1]))
for _ in range(int(sys.argv[2])):
    engine = ModelEngine(model)
    try:
        engine.run(model.scripts[0], device_id="hoarder.0", context={}, state={}, properties={})
    except ScriptError as exc:
        assert "memory limit" in str(exc), exc
    print("bomb", flush=True)
"""

CALLS_CHILD = """
import json, statistics, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from device_bench_support import write_model
from pytest_cirque.device_models.engine import ModelEngine
from pytest_cirque.device_models.model import load_model

model = load_model(write_model(Path(sys.argv[1]), "calls", "00:00:01", script="javascript"))
engine = ModelEngine(model)
state, runs = dict(model.initial_state), []
for _ in range(int(sys.argv[4])):
    start = time.process_time()
    for i in range(int(sys.argv[2])):
        step = engine.run(model.scripts[0], device_id="calls.0", state=state, properties={},
            context={"currentTime": "2024-05-01T10:00:00+00:00", "deviceId": "calls.0"}, seed=i)
        for update in step.updates:
            if update[0] == "state":
                state.update(update[1])
    runs.append((time.process_time() - start) / int(sys.argv[2]) * 1e6)
print(json.dumps(round(statistics.median(runs), 2)))
"""

HOARD_JS = """"use strict";
function main(context, previousState, previousProperties) {
    var hoard = [];
    for (;;) {
        hoard.push(new Array(1024).fill("x".repeat(64)));
    }
}
"""


def write_hoarder(folder: Path) -> Path:
    """A model whose state script allocates without bound, called 10 times a second."""
    (folder / "hoard.js").write_text(HOARD_JS)
    model = {
        "SchemaVersion": "1.0.0",
        "Id": "hoarder",
        "Name": "Hoarder",
        "Protocol": "MQTT",
        "Simulation": {
            "InitialState": {"count": 0},
            "Interval": "00:00:00.1",
            "Scripts": [{"Type": "javascript", "Path": "hoard.js"}],
        },
        "Telemetry": [
            {
                "Interval": "00:00:01",
                "MessageTemplate": '{"count":${count}}',
                "MessageSchema": {
                    "Name": "count;v1",
                    "Format": "JSON",
                    "Fields": {"count": "integer"},
                },
            }
        ],
    }
    path = folder / "hoarder.json"
    path.write_text(json.dumps(model, indent=2))
    return path


def run(python: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, "-W", "ignore", *args], capture_output=True, text=True, check=False
    )


def measure(python: str, args: argparse.Namespace, folder: Path, broker_url: str) -> dict:
    info = run(python, "-c", INFO_CHILD)
    if info.returncode != 0:
        return {"python": python, "error": info.stderr.strip().splitlines()[-1]}
    result: dict[str, Any] = {"python": python, **json.loads(info.stdout)}
    hoarder = write_hoarder(folder)

    bombs = []
    for _ in range(args.runs):
        child = run(python, "-c", BOMB_CHILD, str(hoarder), str(args.bombs))
        bombs.append({"survived": child.stdout.count("bomb"), "exit_code": child.returncode})
    result["bombs"] = {"per_run": args.bombs, "runs": bombs}

    cli = []
    for _ in range(args.runs):
        child = run(
            python, "-m", "pytest_cirque.cli", "devices", "run", "--model", str(hoarder),
            "--count", str(args.cli_devices), "--broker", broker_url,
            "--duration", str(args.cli_seconds), "--seed", "1",
        )  # fmt: skip
        done = [line for line in child.stdout.splitlines() if line.startswith("done: ")]
        cli.append({"exit_code": child.returncode, "summary": done[0] if done else ""})
    result["cli"] = {"devices": args.cli_devices, "seconds": args.cli_seconds, "runs": cli}

    calls = run(python, "-c", CALLS_CHILD, str(folder), str(args.calls), str(HERE), str(args.runs))
    result["call_us"] = json.loads(calls.stdout) if calls.returncode == 0 else None

    return result


def simulator_cpu(python: str, folder: Path) -> float | str:
    """One run of bench_simulator_cpu.py (JavaScript state scripts): CPU us per message."""
    out = folder / "simulator_cpu"
    child = run(
        python, str(HERE / "bench_simulator_cpu.py"), "--script", "javascript",
        "--repeat", "1", "--out", str(out),
    )  # fmt: skip
    if child.returncode != 0:
        return child.stderr.strip().splitlines()[-1]
    return float(json.loads(out.with_suffix(".json").read_text())["median_cpu_us_per_message"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", required=True, help="one per binding")
    parser.add_argument("--bombs", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--cli-devices", type=int, default=4)
    parser.add_argument("--cli-seconds", type=float, default=3)
    parser.add_argument("--simulator", action="store_true")
    parser.add_argument("--baseline", help="the --python whose speed the others are compared to")
    parser.add_argument("--label", default="")
    parser.add_argument("--out", default="script_engines")
    args = parser.parse_args()

    broker = MosquittoProcess()
    broker.start()
    try:
        bindings = []
        for python in args.python:
            with tempfile.TemporaryDirectory(prefix="cirque-engines-") as folder:
                bindings.append(measure(python, args, Path(folder), broker.url))
            print(json.dumps(bindings[-1]), file=sys.stderr)
        if args.simulator:  # runs take turns, so a change of machine load hits every binding
            with tempfile.TemporaryDirectory(prefix="cirque-engines-") as folder:
                for _ in range(args.runs):
                    for binding in bindings:
                        cost = simulator_cpu(binding["python"], Path(folder))
                        binding.setdefault("simulator_cpu_us_per_message", []).append(cost)
                        print(json.dumps({binding["python"]: cost}), file=sys.stderr)
        info = machine(broker)
    finally:
        broker.close()
    for binding in bindings:
        costs = [c for c in binding.get("simulator_cpu_us_per_message", []) if isinstance(c, float)]
        if costs:
            binding["simulator_median_cpu_us_per_message"] = statistics.median(costs)
    base = next((b for b in bindings if b["python"] == args.baseline), None)
    for binding in bindings if base else []:
        for key in ("call_us", "simulator_median_cpu_us_per_message"):
            if binding.get(key) and base.get(key):
                binding[f"{key}_vs_baseline"] = round(binding[key] / base[key], 2)
    result = {
        "benchmark": "script_engines",
        "label": args.label,
        "baseline": args.baseline or "",
        "bindings": bindings,
        "machine": info,
    }
    write_result(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
