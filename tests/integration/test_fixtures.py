"""The device-model fixtures with real brokers: fleets, recorders, method assertions.

The first tests use the fixtures as a user's test would; the pytester tests check what
a user sees when an expectation fails, and that teardown happens even then.
"""

from __future__ import annotations

import pytest

from pytest_cirque.core.errors import CirqueError, WaitTimeout

ELEVATOR_SCHEMA = "elevator-sensors;v1"


def test_fleet_telemetry_arrives_with_values_in_range(device_simulation, telemetry):
    sim = device_simulation("elevator", 2, jitter=0, seed=1)
    for device in ("elevator.0", "elevator.1"):
        got = telemetry.wait_for(
            1,
            schema=ELEVATOR_SCHEMA,
            device=device,
            where={"floor": lambda f: 1 <= f <= 12, "temperature_unit": "F"},
        )
        assert got[0].content_type == "application/json" and got[0].created
    counts = sim.simulation.transport.counts
    assert counts.failed == 0 and counts.sent >= 2


def test_initial_properties_are_reported(device_simulation, telemetry):
    device_simulation("light", 1, jitter=0)
    reported = telemetry.wait_for(1, kind="properties", device="light.0")[0]
    assert reported.json == telemetry.reported_properties("light.0")
    assert "Firmware" in reported.json


def test_assert_method_through_the_api(device_simulation, assert_method):
    sim = device_simulation("elevator", 1, jitter=0)
    answer = assert_method(sim, "elevator.0", "StopElevator", state={"moving": False})
    assert isinstance(answer["floor"], int)
    assert_method(sim, "elevator.0", "StartElevator", state={"moving": True})


def test_assert_method_through_the_mqtt_request_topic(device_simulation, telemetry, assert_method):
    sim = device_simulation("elevator", 1, jitter=0, pooled=True)
    assert_method(
        sim,
        "elevator.0",
        "FirmwareUpdate",
        {"Firmware": "2.0", "StepMilliseconds": 50},
        response={"Firmware": "2.0"},
        state={"online": True},
        via=telemetry,
    )
    telemetry.wait_for(
        1, kind="properties", device="elevator.0", where={"FirmwareUpdateStatus": "Completed"}
    )
    assert telemetry.reported_properties("elevator.0")["Firmware"] == "2.0"


def test_assert_method_reports_unknown_method(device_simulation, telemetry, assert_method):
    sim = device_simulation("elevator", 1, jitter=0)
    answer = assert_method(sim, "elevator.0", "Levitate", status=404, via=telemetry)
    assert "has no method 'Levitate'" in answer["error"]
    with pytest.raises(AssertionError, match="answered 404"):
        assert_method(sim, "elevator.0", "Levitate")


def test_failed_state_expectation_says_what_the_state_is(device_simulation, assert_method):
    sim = device_simulation("elevator", 1, jitter=0)
    with pytest.raises(WaitTimeout, match=r"for state \{'moving': 'sideways'\}; the state is"):
        assert_method(sim, "elevator.0", "StopElevator", state={"moving": "sideways"}, timeout=1)


def test_http_fleet(device_simulation, http_endpoint):
    sim = device_simulation("thermostat", 2, protocol="http", jitter=0)
    got = http_endpoint.wait_for(2, kind="telemetry")
    assert {m.device_id for m in got} <= {"thermostat.0", "thermostat.1"}
    assert got[0].where.startswith("POST /devices/thermostat.")
    http_endpoint.wait_for(1, kind="properties", device="thermostat.1")
    assert sim.simulation.transport.counts.failed == 0


def test_amqp_fleet(device_simulation, amqp_telemetry):
    sim = device_simulation("truck", 1, protocol="amqp", jitter=0)
    got = amqp_telemetry.wait_for(1, device="truck.0")
    assert got[0].schema and got[0].where == "devices.truck.0.messages.events"
    assert sim.simulation.transport.counts.failed == 0


def test_unknown_protocol_is_refused(device_simulation):
    with pytest.raises(CirqueError, match="unknown protocol 'CoAP'"):
        device_simulation("light", 1, protocol="CoAP")


def test_failed_wait_in_a_user_test_says_what_arrived(pytester):
    pytester.makepyfile(
        """
        def test_expects_a_floor_that_never_comes(device_simulation, telemetry):
            device_simulation("elevator", 1, jitter=0)
            telemetry.wait_for(1, device="elevator.0")
            telemetry.wait_for(1, device="elevator.0", where={"floor": 99}, timeout=1)
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*WaitTimeout: waited 1 s for 1 telemetry message(s) from device 'elevator.0' "
            "matching {'floor': 99}; arrived instead: * message(s): "
            "*elevator.0/elevator-sensors;v1 x*",
            "*--- recent log ---",
            "*simulation of elevator: 1 device(s), 1 online; transport mqtt://127.0.0.1:*: "
            "sent *, delivered *, failed 0, reconnects 0",
        ]
    )


def test_simulations_are_stopped_after_a_failing_test(pytester):
    pytester.makepyfile(
        """
        import pytest

        runners = []

        def test_fails_with_a_fleet_running(device_simulation):
            runners.append(device_simulation("light", 3, jitter=0))
            assert False, "on purpose"

        def test_the_fleet_was_stopped():
            (runner,) = runners
            assert runner._loop is None  # the runner's loop thread ended
            assert runner.simulation.transport.connected_devices == 0
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*AssertionError: on purpose*"])


def _stock_copy(tmp_path, name: str, protocol: str):
    """A copy of a stock model (and the scripts beside it) that speaks ``protocol``."""
    import json
    import shutil

    from pytest_cirque.device_models.model import resolve_model_path

    source = resolve_model_path(name)
    for script in source.parent.glob("*.js"):
        shutil.copy(script, tmp_path / script.name)
    model = json.loads(source.read_text())
    model["Protocol"] = protocol
    model["Id"] = f"{name}-{protocol.lower()}"
    path = tmp_path / f"{model['Id']}.json"
    path.write_text(json.dumps(model))
    return path


def test_protocol_defaults_to_the_models_protocol(tmp_path, device_simulation, http_endpoint):
    sim = device_simulation(_stock_copy(tmp_path, "light", "HTTP"), jitter=0)
    got = http_endpoint.wait_for(1, device="light-http.0")
    assert got[0].where == "POST /devices/light-http.0/messages/events"
    assert sim.simulation.transport.counts.failed == 0


def test_models_of_different_protocols_need_a_choice(tmp_path, device_simulation):
    with pytest.raises(CirqueError, match="the models speak HTTP, MQTT: pass protocol="):
        device_simulation([_stock_copy(tmp_path, "light", "HTTP"), "elevator"])


def test_two_fleets_of_one_model_in_a_test_both_stay_connected(device_simulation, telemetry):
    first = device_simulation("light", 1, jitter=0)
    second = device_simulation("light", 1, jitter=0)
    telemetry.wait_for(2, device="light.0")
    for sim in (first, second):
        transport = sim.simulation.transport
        assert transport.counts.reconnects == 0 and transport.connected_devices == 1
