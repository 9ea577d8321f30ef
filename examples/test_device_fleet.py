"""The README's device-model example: a fleet of stock elevators on the session's broker."""


def test_elevators_report_their_floor(device_simulation, telemetry):
    device_simulation(["elevator"], count=3)  # to the session's own mosquitto
    telemetry.wait_for(3, schema="elevator-sensors;v1", where={"floor": lambda f: 1 <= f <= 15})
