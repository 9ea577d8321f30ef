"""A folder of models laid out as the original device simulation service lays out its
``devicemodels/`` (JSON models, their JavaScript in ``scripts/``) validates and runs as it
is: internal scripts with Params as the original writes them, and Protobuf telemetry
encoded with the schema the user gives (``ProtoFile``, ``--proto``, ``proto=``)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_cirque.cli import main
from pytest_cirque.core.errors import DeviceModelError, TelemetryProblem
from pytest_cirque.core.waiting import wait_until
from pytest_cirque.device_models import internal_scripts, telemetry
from pytest_cirque.device_models.model import load_model, validate_model_file
from pytest_cirque.device_models.recorders import HttpEndpoint

FOLDER = Path(__file__).parent / "data" / "devicemodels"
MODELS = sorted(FOLDER.glob("*.json"))
TRACKER = FOLDER / "tracker-01-protobuf.json"
TRACKER_PROTO = FOLDER / "proto" / "tracker.proto"
TRACKER_CLASS = "Cirque.Tests.DeviceModels.Protobuf.Tracker"


def line_of(path: Path, text: str) -> int:
    """The 1-based line of ``path`` where ``text`` first appears."""
    lines = path.read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


def copy_folder(tmp_path: Path) -> Path:
    """A copy of the folder that a test may change."""
    folder = tmp_path / "devicemodels"
    shutil.copytree(FOLDER, folder)
    return folder


def as_the_original_writes_it(folder: Path) -> Path:
    """The Protobuf model of ``folder`` without our ProtoFile key: ClassName alone."""
    path = folder / TRACKER.name
    document = json.loads(path.read_text())
    del document["Telemetry"][0]["MessageSchema"]["ProtoFile"]
    path.write_text(json.dumps(document, indent=2))
    return path


def validate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    """Run ``cirque devices validate ARGS`` in this process: exit code, printed lines."""
    code = main(["devices", "validate", *args])
    captured = capsys.readouterr()
    return code, (captured.out + captured.err).strip().splitlines()


def compiled_module(tmp_path: Path) -> Path:
    """tracker_pb2.py as protoc --python_out writes it."""
    if importlib.util.find_spec("grpc_tools") is None:
        pytest.skip("grpcio-tools (the test extra) compiles the _pb2 module")
    subprocess.run(
        [
            sys.executable, "-m", "grpc_tools.protoc", f"--proto_path={TRACKER_PROTO.parent}",
            f"--python_out={tmp_path}", str(TRACKER_PROTO),
        ],
        check=True,
    )  # fmt: skip
    return tmp_path / "tracker_pb2.py"


# --- validate ---------------------------------------------------------------------------


def test_the_folder_validates_as_it_is(capsys: pytest.CaptureFixture[str]) -> None:
    assert [m.name for m in MODELS] == [
        "boiler-01.json",
        "pump-01.json",
        "tracker-01-protobuf.json",
    ]
    code, lines = validate(capsys, *map(str, MODELS))
    assert code == 0, lines
    assert lines == [
        f"{FOLDER / 'boiler-01.json'}: ok: model boiler-01 (1 messages, 0 methods)",
        f"{FOLDER / 'pump-01.json'}: ok: model pump-01 (1 messages, 1 methods)",
        f"{TRACKER}: ok: model tracker-01-proto (1 messages, 0 methods)",
    ]


def test_scripts_are_found_in_the_scripts_subfolder() -> None:
    model = load_model(FOLDER / "pump-01.json")
    assert [ref.file for ref in model.javascript()] == [
        FOLDER.resolve() / "scripts" / "pump-01-state.js",
        FOLDER.resolve() / "scripts" / "Flush-method.js",
    ]


def test_protobuf_without_a_schema_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = as_the_original_writes_it(copy_folder(tmp_path))
    code, lines = validate(capsys, str(model))
    assert code == 1
    assert lines == [
        f"{model}:{line_of(model, 'ClassName')}: model tracker-01-proto: "
        "Telemetry[0].MessageSchema.ClassName: no protobuf schema for Protobuf message "
        f"'tracker;v1' (ClassName '{TRACKER_CLASS}'); add \"ProtoFile\": \"FILE.proto\" "
        "beside ClassName, or pass --proto FILE.proto or a compiled _pb2 module "
        "(device_simulation(..., proto=...))",
        "1 problem(s) in 1 file(s)",
    ]


def test_the_original_style_model_validates_with_proto_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = as_the_original_writes_it(copy_folder(tmp_path))
    code, lines = validate(capsys, str(model), "--proto", str(TRACKER_PROTO))
    assert code == 0, lines
    code, lines = validate(capsys, str(model), "--proto", str(compiled_module(tmp_path)))
    assert code == 0, lines


def test_a_proto_source_that_cannot_load_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere.proto"
    code, lines = validate(capsys, str(TRACKER), "--proto", str(missing))
    assert code == 2
    assert lines == [
        f"cirque: --proto: protobuf schema {missing}: no such .proto file; check the path"
    ]
    code, lines = validate(capsys, str(TRACKER), "--proto", "no_such_package.tracker_pb2")
    assert code == 2 and len(lines) == 1
    assert "not a .proto file, a _pb2.py file or an importable module" in lines[0]


def test_a_proto_that_does_not_compile_names_its_line(tmp_path: Path) -> None:
    folder = copy_folder(tmp_path)
    proto = folder / "proto" / "tracker.proto"
    proto.write_text(proto.read_text().replace("uint32 speed = 3;", "uint32 speed = ;"))
    _, errors = validate_model_file(folder / TRACKER.name)
    (error,) = errors
    message = str(error)
    assert message.startswith(f"{folder / TRACKER.name}:{line_of(TRACKER, 'ProtoFile')}: ")
    assert "MessageSchema.ProtoFile:" in message and "protoc could not compile it" in message
    assert f"tracker.proto:{line_of(proto, 'speed = ;')}:" in message
    assert "\n" not in message


def test_a_class_name_the_schema_lacks_lists_what_it_has(tmp_path: Path) -> None:
    folder = copy_folder(tmp_path)
    path = folder / TRACKER.name
    path.write_text(path.read_text().replace(TRACKER_CLASS, "Some.Other.Packet"))
    _, errors = validate_model_file(path)
    (error,) = errors
    assert "ClassName 'Some.Other.Packet'" in str(error)
    assert "the schemas given define cirque.tests.devicemodels.Tracker" in str(error)


def test_a_template_field_the_message_type_lacks_is_refused_at_the_template(
    tmp_path: Path,
) -> None:
    folder = copy_folder(tmp_path)
    path = folder / TRACKER.name
    document = json.loads(path.read_text())
    message = document["Telemetry"][0]
    message["MessageTemplate"] = message["MessageTemplate"][:-1] + ',"heading":1}'
    message["MessageSchema"]["Fields"]["heading"] = "integer"
    path.write_text(json.dumps(document, indent=2))
    _, errors = validate_model_file(path)
    (error,) = errors
    assert f":{line_of(path, 'MessageTemplate')}: " in str(error)
    assert "does not fit protobuf cirque.tests.devicemodels.Tracker" in str(error)
    assert '"heading"' in str(error)


def test_a_proto_file_outside_the_models_folder_needs_allow_outside(tmp_path: Path) -> None:
    folder = copy_folder(tmp_path)
    shutil.move(folder / "proto" / "tracker.proto", tmp_path / "tracker.proto")
    path = folder / TRACKER.name
    path.write_text(path.read_text().replace("proto/tracker.proto", "../tracker.proto"))
    _, errors = validate_model_file(path)
    (error,) = errors
    assert "ProtoFile file '../tracker.proto' is outside the model's folder" in str(error)
    assert "or pass --allow-outside" in str(error)
    model, errors = validate_model_file(path, allow_outside=True)
    assert model is not None and not errors


def test_a_proto_file_on_a_json_message_is_refused(tmp_path: Path) -> None:
    folder = copy_folder(tmp_path)
    path = folder / TRACKER.name
    path.write_text(path.read_text().replace('"Format": "Protobuf"', '"Format": "JSON"'))
    _, errors = validate_model_file(path)
    (error,) = errors
    assert f":{line_of(path, 'ProtoFile')}: " in str(error)
    assert 'ProtoFile is for Format Protobuf (this message is JSON); remove it or set "Format"' in (
        str(error)
    )


# --- ClassName lookup and the codec -----------------------------------------------------


@pytest.mark.parametrize(
    "class_name",
    [
        TRACKER_CLASS,  # the original's way: csharp_namespace.Name
        "cirque.tests.devicemodels.Tracker",  # the protobuf full name
        "Anything.Else.Tracker",  # the last part, when one message type has it
    ],
)
def test_class_names_find_the_message_type(class_name: str) -> None:
    catalog = telemetry.ProtoCatalog.load([TRACKER_PROTO])
    found = catalog.find(class_name)
    assert found is not None and found.full_name == "cirque.tests.devicemodels.Tracker"


def test_a_short_class_name_two_schemas_define_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.proto"
    other.write_text('syntax = "proto3";\npackage other;\nmessage Tracker { double x = 1; }\n')
    catalog = telemetry.ProtoCatalog.load([TRACKER_PROTO, other])
    with pytest.raises(TelemetryProblem, match=r"could be any of .*; write the full name"):
        catalog.find("Tracker")
    assert catalog.find("other.Tracker") is not None


def test_encode_and_decode_round_trip(tmp_path: Path) -> None:
    fields = {"latitude": 1.5, "longitude": -2.25, "speed": 30, "speed_unit": "km/h"}
    from_proto = telemetry.ProtoCatalog.load([TRACKER_PROTO]).find(TRACKER_CLASS)
    from_module = telemetry.ProtoCatalog.load([compiled_module(tmp_path)]).find(TRACKER_CLASS)
    assert from_proto is not None and from_module is not None
    body = from_proto.encode(fields)
    assert from_module.encode(fields) == body  # the same wire format either way
    assert from_module.decode(body) == fields
    with pytest.raises(TelemetryProblem, match="does not fit protobuf"):
        from_proto.encode({**fields, "speed": 30.5})


def test_load_model_takes_the_schema_from_proto(tmp_path: Path) -> None:
    model = as_the_original_writes_it(copy_folder(tmp_path))
    with pytest.raises(DeviceModelError, match="no protobuf schema for Protobuf message"):
        load_model(model)
    schema = load_model(model, proto=compiled_module(tmp_path)).telemetry[0].schema
    assert schema.format == "PROTOBUF" and schema.class_name == TRACKER_CLASS
    assert schema.content_type == "application/x-protobuf"


# --- internal scripts as the original writes them ---------------------------------------


def test_internal_script_params_as_the_original_writes_them() -> None:
    params = {"temperature": {"Min": "1", "Max": "12", "Step": 1, "Unit": "C"}}
    for path in ("math.random.withinrange", "Math.Increasing", "Math.Decreasing"):
        assert internal_scripts.check_params(path, params) == []
        assert internal_scripts.normalize_params(path, params)["temperature"]["Min"] == 1
    assert internal_scripts.normalize_params("Math.Increasing", params) == {
        "temperature": {"Min": 1, "Max": 12, "Step": 1, "Unit": "C"}
    }
    assert internal_scripts.as_number("-0.5") == -0.5
    assert internal_scripts.as_number("12") == 12
    assert internal_scripts.as_number(True) is None
    assert internal_scripts.as_number("twelve") is None


def test_a_mis_cased_internal_param_says_so() -> None:
    problems = internal_scripts.check_params("Math.Random.WithinRange", {"t": {"min": 1, "Max": 2}})
    assert problems == [
        (
            ("t", "Min"),
            "Min must be a number or a numeric string (got None); names are case-sensitive: "
            "write 'Min', not 'min'",
        )
    ]


def test_the_boilers_internal_scripts_are_loaded_as_numbers() -> None:
    scripts = load_model(FOLDER / "boiler-01.json").scripts
    assert [(ref.type, ref.path) for ref in scripts] == [
        ("internal", "Math.Random.WithinRange"),
        ("internal", "math.increasing"),
        ("internal", "Math.Decreasing"),
    ]
    assert scripts[1].params == {"pressure": {"Min": 10, "Max": 50, "Step": 10, "Unit": "psi"}}
    assert scripts[2].params == {"level": {"Min": 0, "Max": 100, "Step": 25, "Unit": "%"}}


# --- run --------------------------------------------------------------------------------


def decoded_telemetry(endpoint: HttpEndpoint, proto: telemetry.ProtoMessage) -> list[dict]:
    """The Protobuf messages the endpoint received so far, decoded."""
    received = endpoint.select(schema="tracker;v1")
    assert {m.content_type for m in received} <= {"application/x-protobuf"}
    return [proto.decode(m.body) for m in received]


def test_the_folder_runs_and_its_telemetry_arrives(
    device_simulation: Any, http_endpoint: HttpEndpoint
) -> None:
    runner = device_simulation(MODELS, count=2, broker=http_endpoint, jitter=0, seed=7)
    tracker = runner.simulation.models[2].telemetry[0].schema.proto
    assert tracker is not None

    pump = http_endpoint.wait_for(6, schema="pump-flow;v1")
    assert {m.content_type for m in pump} == {"application/json"}
    assert all(m.json["flow_unit"] == "l/min" for m in pump)
    http_endpoint.wait_for(schema="pump-flow;v1", where={"cycles": lambda c: c >= 1})
    http_endpoint.wait_for(schema="pump-flow;v1", where={"flow": lambda f: f != 12.5})
    assert all(
        11.25 <= m.json["flow"] <= 13.75 for m in http_endpoint.select(schema="pump-flow;v1")
    )

    boiler = http_endpoint.wait_for(6, schema="boiler;v1")
    assert {m.json["pressure"] for m in boiler} <= {10, 20, 30, 40, 50}
    assert {m.json["level"] for m in boiler} <= {0, 25, 50, 75, 100}
    assert all(type(m.json["pressure"]) is int for m in boiler)  # "10" read as 10, not 10.0
    assert all(60 <= m.json["temperature"] <= 80 for m in boiler)
    http_endpoint.wait_for(schema="boiler;v1", where={"pressure": 20, "level": 75})

    http_endpoint.wait_for(6, schema="tracker;v1")
    wait_until(
        lambda: any(d["speed"] >= 20 for d in decoded_telemetry(http_endpoint, tracker)),
        "a tracker message with the speed its state script set",
        30,
    )
    decoded = decoded_telemetry(http_endpoint, tracker)
    assert all(set(d) == {"latitude", "longitude", "speed", "speed_unit"} for d in decoded)
    assert all(d["speed_unit"] == "km/h" and d["latitude"] >= 51.5 for d in decoded)
    assert runner.simulation.error_count == 0, list(runner.simulation.errors)


def test_an_original_style_protobuf_model_runs_with_a_compiled_module(
    tmp_path: Path, device_simulation: Any, http_endpoint: HttpEndpoint
) -> None:
    model = as_the_original_writes_it(copy_folder(tmp_path))
    module = compiled_module(tmp_path)
    runner = device_simulation(model, broker=http_endpoint, jitter=0, proto=module)
    tracker = runner.simulation.models[0].telemetry[0].schema.proto
    assert tracker is not None and tracker.source == str(module)
    http_endpoint.wait_for(3, schema="tracker;v1")
    decoded = decoded_telemetry(http_endpoint, tracker)
    assert all(d["speed_unit"] == "km/h" for d in decoded)


def test_run_refuses_a_proto_it_cannot_load_before_connecting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere.proto"
    argv = ["devices", "run", "--model", str(TRACKER), "--broker", "http://127.0.0.1:9"]
    assert main([*argv, "--proto", str(missing)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"cirque: --proto: protobuf schema {missing}: no such .proto file; check the path"
    ]
