"""Waiting on a recorder, and the transports' silent settle: the one wait, no broker."""

from __future__ import annotations

import asyncio
import threading

import pytest

from pytest_cirque.core.errors import WaitTimeout
from pytest_cirque.device_models.recorders import Received, TelemetryRecorder
from pytest_cirque.device_models.transports.base import DeliveryCounts, settle


def reading(device: str, body: bytes = b'{"n": 1}') -> Received:
    return Received("telemetry", device, "reading;v1", "application/json", "", body, "t")


def test_waiting_for_nothing_is_answered_at_once() -> None:
    assert TelemetryRecorder().wait_for(0, timeout=5) == []


def test_a_message_recorded_by_another_thread_ends_the_wait() -> None:
    recorder = TelemetryRecorder()
    threading.Thread(target=recorder.record, args=(reading("dev-1"),)).start()
    [found] = recorder.wait_for(1, device="dev-1", where={"n": 1}, timeout=30)
    assert found.json == {"n": 1}


def test_a_failed_wait_says_what_was_awaited_and_what_arrived_instead() -> None:
    recorder = TelemetryRecorder()
    recorder.explain_with(lambda: "simulation: 1 sent")
    recorder.record(reading("dev-1"))
    with pytest.raises(WaitTimeout) as caught:
        recorder.wait_for(1, device="dev-2", timeout=0.2)
    message = str(caught.value).splitlines()[0]
    assert message.startswith("waited 0.2 s for 1 telemetry message(s) from device 'dev-2'; ")
    assert "arrived instead: 1 message(s): dev-1/reading;v1 x1" in message
    assert caught.value.log == "simulation: 1 sent"


def test_settle_is_silent_at_its_deadline_and_leaves_the_counts_to_tell() -> None:
    pending = DeliveryCounts(sent=2, delivered=1)
    asyncio.run(settle([pending], 0.05))
    assert pending.pending == 1
    asyncio.run(settle([DeliveryCounts(sent=1, delivered=1)], 30))
