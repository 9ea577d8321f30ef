"""Shared parts of the fleet benchmarks: a benchmark model, broker-side counting and
simulator shards in their own processes (the machine block is in machine.py).

Broker-side counts come from a subscriber per broker that counts every telemetry message
the broker delivers (QoS 1, so the broker queues rather than drops when it lags) and
measures end-to-end lateness from the message's ``created`` property.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from pytest_cirque.device_models.transports.mqtt import parse_mqtt_url

STATE_SCRIPT = """
function main(context, previousState, previousProperties) {
    updateState({
        temperature: previousState.temperature + (Math.random() - 0.5),
        ticks: previousState.ticks + 1
    });
}
"""


def write_model(folder: Path, model_id: str, interval: str, script: str = "javascript") -> Path:
    """A sensor model: one state script and one message, both every ``interval``."""
    folder.mkdir(parents=True, exist_ok=True)
    if script == "javascript":
        (folder / "bench-state.js").write_text(STATE_SCRIPT)
        scripts = [{"Type": "javascript", "Path": "bench-state.js"}]
    else:
        scripts = [
            {
                "Type": "internal",
                "Path": "Math.Random.WithinRange",
                "Params": {"temperature": {"Min": 15, "Max": 25}},
            }
        ]
    model = {
        "SchemaVersion": "1.0.0",
        "Id": model_id,
        "Version": "1.0.0",
        "Name": "Bench sensor",
        "Description": "A sensor for the fleet benchmarks.",
        "Protocol": "MQTT",
        "Simulation": {
            "InitialState": {"online": True, "temperature": 20.0, "ticks": 0},
            "Interval": interval,
            "Scripts": scripts,
        },
        "Properties": {"Type": "BenchSensor"},
        "Telemetry": [
            {
                "Interval": interval,
                "MessageTemplate": '{"temperature":${temperature},"ticks":${ticks}}',
                "MessageSchema": {
                    "Name": "bench-sensor;v1",
                    "Format": "JSON",
                    "Fields": {"temperature": "double", "ticks": "integer"},
                },
            }
        ],
    }
    path = folder / f"{model_id}.json"
    path.write_text(json.dumps(model, indent=2))
    return path


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


class BrokerCounter:
    """The broker's own count of PUBLISH packets it received (``$SYS``), read live.

    Counting at the broker costs the benchmark nothing on a 2-core machine, where a
    counting subscriber would compete with the simulator for CPU. Compare a difference
    of readings with the telemetry the simulator handed over. mosquitto 2.0 leaves
    retained publishes (the property reports) out of this count.
    """

    TOPIC = "$SYS/broker/publish/messages/received"

    def __init__(self, url: str) -> None:
        host, port = parse_mqtt_url(url)
        self.value = -1
        self._changed = threading.Condition()
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"bench-counter-{port}-{os.getpid()}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self._client.on_message = self._on_message
        self._client.on_connect = lambda c, *args: c.subscribe(self.TOPIC, 0)
        self._client.connect(host, port, keepalive=600)
        self._client.loop_start()
        self.wait_at_least(0)

    def _on_message(self, _client, _userdata, message) -> None:
        with self._changed:
            self.value = int(message.payload)
            self._changed.notify_all()

    def wait_at_least(self, target: int, timeout: float = 60) -> int:
        """Wait until the count reaches ``target`` (or the deadline); return the count."""
        try:
            for attempt in Retrying(
                stop=stop_after_delay(timeout),
                wait=wait_fixed(1.0),
                sleep=self._sleep_until_news,
                retry=retry_if_exception_type(_Short),
                reraise=True,
            ):
                with attempt:
                    if self.value < target:
                        raise _Short
        except _Short:
            pass  # the caller reports what is missing
        return self.value

    def _sleep_until_news(self, seconds: float) -> None:
        with self._changed:
            self._changed.wait(seconds)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


class _Short(Exception):
    pass


def rss_bytes(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def run_shards(script: str, shard_args: list[list[str]]) -> list[dict]:
    """Run simulator shards as processes (each its own open-files budget); their JSON."""
    processes = [
        subprocess.Popen(
            [sys.executable, script, "--shard", *args],
            stdout=subprocess.PIPE,
            text=True,
        )
        for args in shard_args
    ]
    results = []
    for process in processes:
        out, _ = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"shard {process.args} exited {process.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results
