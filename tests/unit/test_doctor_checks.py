"""Doctor: kernel features from host files, probe script and its parsing, the report."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pytest_cirque import doctor
from pytest_cirque.doctor import Check, HostKernel

RELEASE = "6.1.0-test"


def feature(name: str) -> doctor.KernelFeature:
    return next(f for f in doctor.KERNEL_FEATURES if f.name == name)


def modular_tree(root: Path) -> Path:
    """A host with loadable modules: netem loaded, bridge built in, ipvlan a module file."""
    (root / "proc/net").mkdir(parents=True)
    (root / "proc/modules").write_text("sch_netem 24576 0 - Live 0x0\nmac80211_hwsim 1 0 - Live\n")
    (root / "proc/net/ip_tables_matches").write_text("state\nstatistic\n")
    modules = root / "lib/modules" / RELEASE
    modules.mkdir(parents=True)
    (modules / "modules.builtin").write_text(
        "kernel/net/bridge/bridge.ko\nkernel/net/veth.ko\nkernel/drivers/net/tun.ko\n"
    )
    (modules / "modules.dep").write_text(
        "kernel/drivers/net/ipvlan/ipvlan.ko.xz:\nkernel/net/mac802154/mac802154.ko.zst: x.ko\n"
    )
    (root / "sys/module/sch_netem").mkdir(parents=True)
    (root / "dev/net").mkdir(parents=True)
    (root / "dev/net/tun").write_text("")
    return root


def never_asked(family: str) -> bool:
    raise AssertionError(f"asked the kernel for {family} on a host that loads modules")


def test_module_states_on_a_host_with_loadable_modules(tmp_path: Path) -> None:
    host = HostKernel(modular_tree(tmp_path), RELEASE, never_asked)
    assert host.module_state("sch_netem") == "loaded"
    assert host.module_state("bridge") == "builtin"
    assert host.module_state("ipvlan") == "loadable"
    assert host.module_state("sch-netem") == "loaded"  # dashes and underscores are one name
    assert host.module_state("ieee802154") == "absent"


def test_netlink_families_are_never_asked_where_asking_could_load_a_module(
    tmp_path: Path,
) -> None:
    host = HostKernel(modular_tree(tmp_path), RELEASE, never_asked)
    check = doctor.kernel_check(feature("hwsim"), host, None)
    assert check.status == doctor.OK  # mac80211_hwsim is in /proc/modules
    assert "netlink" not in check.method


def test_kernel_without_modules_asks_netlink_for_radio_families(tmp_path: Path) -> None:
    (tmp_path / "sys/module/bridge").mkdir(parents=True)
    asked: list[str] = []

    def genl(family: str) -> bool:
        asked.append(family)
        return family == "nl802154"

    host = HostKernel(tmp_path, RELEASE, genl)
    assert host.module_state("bridge") == "builtin"
    assert host.module_state("veth") == "builtin or absent"
    hwsim = doctor.kernel_check(feature("hwsim"), host, None)
    wpan = doctor.kernel_check(feature("802.15.4"), host, None)
    assert asked == ["MAC80211_HWSIM", "nl802154"]
    assert hwsim.status == doctor.MISSING
    assert "WiFi is simulated in userspace" in hwsim.meaning
    assert wpan.status == doctor.OK


def test_a_probe_that_ran_decides_over_host_files(tmp_path: Path) -> None:
    host = HostKernel(modular_tree(tmp_path), RELEASE, never_asked)
    netem = doctor.kernel_check(feature("netem"), host, (False, "Error: qdisc kind is unknown."))
    assert netem.status == doctor.MISSING
    assert "fails: Error: qdisc kind is unknown." in netem.detail
    assert "userspace media" in netem.meaning
    assert "helper container" in netem.method
    ipvlan = doctor.kernel_check(feature("ipvlan"), host, (True, "no output"))
    assert ipvlan.status == doctor.OK
    assert ipvlan.detail.startswith("works")


def test_without_netem_tbf_or_statistic_traffic_control_still_works_in_full() -> None:
    """TrafficControl goes through the userspace LAN medium: the report must not call its
    latency, rate or loss unavailable on a kernel without these."""
    netem = feature("netem").if_missing
    assert "latencyMs/jitterMs work through the userspace media" in netem
    for name in ("netem", "tbf", "iptables-statistic"):
        meaning = feature(name).if_missing
        assert "none needed" in meaning
        assert "unavailable" not in meaning and "refused" not in meaning
    assert "TrafficControl" in feature("tun").if_missing


def test_a_loadable_module_without_a_probe_is_a_warning_naming_modprobe(tmp_path: Path) -> None:
    host = HostKernel(modular_tree(tmp_path), RELEASE, never_asked)
    check = doctor.kernel_check(feature("ipvlan"), host, None)
    assert check.status == doctor.WARN
    assert "modprobe ipvlan" in check.detail


def test_missing_veth_is_an_error_because_no_home_can_be_made(tmp_path: Path) -> None:
    host = HostKernel(modular_tree(tmp_path), RELEASE, never_asked)
    check = doctor.kernel_check(feature("veth"), host, (False, "Error: Unknown device type."))
    assert check.status == doctor.ERROR


def test_tun_follows_the_device_node(tmp_path: Path) -> None:
    root = modular_tree(tmp_path)
    host = HostKernel(root, RELEASE, never_asked)
    assert doctor.kernel_check(feature("tun"), host, None).status == doctor.OK
    (root / "dev/net/tun").unlink()
    check = doctor.kernel_check(feature("tun"), HostKernel(root, RELEASE, never_asked), None)
    assert check.status == doctor.MISSING
    assert "no TAP devices" in check.meaning


def test_iptables_statistic_is_seen_in_proc_net_without_privilege(tmp_path: Path) -> None:
    host = HostKernel(modular_tree(tmp_path), RELEASE, never_asked)
    check = doctor.kernel_check(feature("iptables-statistic"), host, None)
    assert check.status == doctor.OK
    assert "/proc/net/ip_tables_matches" in check.method


def stub_tools(bin_dir: Path, failing: dict[str, str]) -> None:
    """ip, tc and iptables stand-ins: each fails with the given message, else succeeds."""
    bin_dir.mkdir()
    for tool in ("ip", "tc", "iptables"):
        script = bin_dir / tool
        message = failing.get(tool)
        body = f'echo "{message}"; exit 2' if message else "exit 0"
        script.write_text(f"#!/bin/sh\n{body}\n")
        script.chmod(0o755)


def test_probe_script_reports_each_probed_feature(tmp_path: Path) -> None:
    stub_tools(tmp_path / "bin", {"tc": "Error: Specified qdisc kind is unknown."})
    script = doctor.probe_script(doctor.KERNEL_FEATURES)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"}
    output = subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, env=env, check=True
    ).stdout
    results = doctor.parse_probe_output(output)
    probed = {f.name for f in doctor.KERNEL_FEATURES if f.probe}
    assert set(results) == probed
    assert results["netem"] == (False, "Error: Specified qdisc kind is unknown.")
    assert results["tbf"][0] is False
    assert results["veth"] == (True, "no output")
    assert results["iptables-statistic"] == (True, "no output")


def test_parse_probe_output_ignores_noise() -> None:
    output = "some warning\nnetem fail Error: nope\nveth ok\n\n"
    assert doctor.parse_probe_output(output) == {
        "netem": (False, "Error: nope"),
        "veth": (True, "no output"),
    }


def test_report_has_a_line_per_check_then_meaning_and_method() -> None:
    checks = [
        Check("docker", doctor.OK, "engine 20.10", "homes can be created", "Docker API"),
        Check("netem", doctor.MISSING, "fails", "latency from userspace media", "helper"),
        Check("nofile", doctor.WARN, "soft 1024", "", ""),
    ]
    report = doctor.format_report(checks).splitlines()
    assert report[0] == "cirque doctor"
    assert report[1].split() == ["ok", "docker", "engine", "20.10"]
    assert report[2].strip() == "means: homes can be created"
    assert report[3].strip() == "checked: Docker API"
    assert report[4].split()[:2] == ["missing", "netem"]
    assert report[7].split() == ["warn", "nofile", "soft", "1024"]
    assert report[-1] == "summary: 1 ok, 1 missing, 1 warn"
    # the findings start in one column, so the report reads as a table
    assert report[1].index("engine") == report[4].index("fails") == report[7].index("soft")


def test_a_check_refuses_an_unknown_status() -> None:
    with pytest.raises(ValueError, match="unknown status"):
        Check("x", "fine", "")


def test_docker_permission_problem_says_to_join_the_docker_group() -> None:
    check = doctor.docker_unreachable(PermissionError("connect: Permission denied"))
    assert check.status == doctor.ERROR
    assert "docker group" in check.meaning


def test_low_nofile_limit_is_a_warning_with_how_to_raise_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(doctor.resource, "getrlimit", lambda _: (1024, 20000))
    check = doctor.nofile_check()
    assert check.status == doctor.WARN
    assert "ulimit -n 20000" in check.detail


def test_without_docker_the_host_checks_still_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    checks = doctor.run_checks(None, host=HostKernel(modular_tree(tmp_path), RELEASE, never_asked))
    by_name = {c.name: c for c in checks}
    assert by_name["docker"].status == doctor.ERROR
    assert by_name["kernel probes"].status == doctor.SKIPPED
    assert by_name["netem"].status == doctor.OK  # loaded, per the host files
    assert {"nofile", "mmdebstrap", "hwsim", "802.15.4", "tun"} <= set(by_name)
    assert not any(name.startswith("image ") for name in by_name)


def test_the_medium_check_describes_the_relays_own_options() -> None:
    from pytest_cirque.radios.client.container import relay_security_options

    wifi = doctor._describe_relay(relay_security_options(True))
    assert wifi == "no capabilities"  # a WiFi medium gets nothing a plain one does not
    assert doctor._describe_relay(relay_security_options(False)) == "no capabilities"
    assert doctor._describe_relay({}) == "the default options"
    assert doctor._describe_relay({"cap_add": ["NET_ADMIN"]}) == "adding NET_ADMIN"


def test_an_unreachable_engine_is_said_once() -> None:
    from pytest_cirque.core.errors import DockerUnavailable

    lost = DockerUnavailable(
        "Docker engine unreachable at unix:///x.sock (refused); start Docker or set DOCKER_HOST"
    )
    check = doctor.docker_unreachable(lost)
    assert check.detail == "unreachable: at unix:///x.sock (refused)"
    assert check.meaning == "no homes can be made: start Docker or set DOCKER_HOST"
