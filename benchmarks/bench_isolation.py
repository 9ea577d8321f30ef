"""How much isolation rests on a node's cooperation: a node holding NET_ADMIN removes its
own segment guard and pings another home's node while networks are created on the engine.

Docker 20.10 takes its inter-bridge isolation jump out of FORWARD and puts it back on
every network creation; each node's segment guard (a prohibit route) covers that gap.
A node that holds NET_ADMIN itself (the WiFi capability gives it, so does a user's own
cap_add) can delete that route. This measures, side by side in one run, how many pings
cross from one home to another during the churn with the guard kept and with it removed.
Prints JSON and writes benchmarks/results/isolation.json.

    .venv/bin/python benchmarks/bench_isolation.py [--networks 20]
"""

from __future__ import annotations

import argparse
import json
import re

from machine import machine, write_result

from pytest_cirque.core import identity
from pytest_cirque.homes import networks
from pytest_cirque.homes.node import Node
from pytest_cirque.homes.session import Cirque
from pytest_cirque.spec import HomeSpec

#: A node with NET_ADMIN of its own and a wired LAN, as a WiFi station with lan: true has.
ROGUE = {"capabilities": [{"WiFi": {"lan": True}}]}


def pings_during_churn(service: Cirque, source: Node, target: str, churn: int) -> dict[str, int]:
    """Ping ``target`` every 2 ms from ``source`` while ``churn`` networks are created and
    removed; how many were sent and how many came back."""
    pidfile = "/tmp/bench-ping.pid"
    ping = source.exec_background(
        f"ping -n -q -i 0.002 -W 1 {target} & echo $! > {pidfile}; wait $!"
    )
    source.wait_until(lambda: source.exec(f"test -s {pidfile}").exit_code == 0, "ping started")
    labels = service.identity.labels("bench-isolation", identity.ROLE_NETWORK)
    for n in range(churn):
        name = identity.object_name(f"cirque-{service.run_id}-bench", f"churn{n}")
        service.backend.remove_network(service.backend.create_network(name, labels=labels))
    source.exec(f'kill -INT "$(cat {pidfile})" 2>/dev/null')
    output = ping.wait(timeout=60).stdout
    match = re.search(r"(\d+) packets transmitted, (\d+) received", output)
    sent, received = (int(match[1]), int(match[2])) if match else (0, 0)
    return {"sent": sent, "received": received}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=20, help="networks created per phase")
    args = parser.parse_args()
    with Cirque(worker="bench") as service:
        victim_home = service.create_home({"victim": {}}, name="victim")
        spec = HomeSpec.parse({"rogue": ROGUE})
        spec.media.add("wifi")  # a station needs the home's WiFi medium
        rogue_home = service.create_home(spec, name="rogue")
        rogue, victim = rogue_home["rogue"], victim_home["victim"]
        assert victim.ip is not None
        guarded = pings_during_churn(service, rogue, victim.ip, args.networks)
        removed = rogue.exec(f"ip route del prohibit {networks.subnet_pool()}")
        unguarded = pings_during_churn(service, rogue, victim.ip, args.networks)
        result = {
            "what": "pings from a NET_ADMIN node of one home to a node of another home while "
            "networks are created and removed on the engine",
            "networks_churned_per_phase": args.networks,
            "guard_kept": guarded,
            "guard_removed_by_the_node": {**unguarded, "removal_exit_code": removed.exit_code},
            "engine": service.backend.engine_version().get("Version"),
            "machine": machine(),
        }
    write_result("isolation", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
