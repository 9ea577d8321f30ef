"""Telemetry messages: fill a MessageTemplate from a device's state and check it.

The template is the seed's: ``${name}`` placeholders are replaced by state values, and the
template's author quotes strings (``"\\"unit\\":\\"${unit}\\""``) while numbers stay bare.
Values are written so that the result stays JSON: numbers as JSON numbers, booleans as
``true``/``false``, objects and arrays as JSON, and strings with their quotes and
backslashes escaped (the template supplies the surrounding quotes). The rendered message
must be valid JSON, and each field of its MessageSchema must be present with its type.
A message of Format Protobuf is then encoded with its protobuf type (see ``ProtoCatalog``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import importlib
import importlib.util
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from pytest_cirque.core.errors import TelemetryProblem

#: The schema field types of the seed, lower-cased (the seed's stock files mix cases).
FIELD_TYPES = ("object", "binary", "text", "boolean", "integer", "double", "datetime")
#: The same, spelled as the seed's document spells them (for messages).
FIELD_TYPE_NAMES = ("Object", "Binary", "Text", "Boolean", "Integer", "Double", "DateTime")

PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")


def placeholders(template: str) -> list[str]:
    """The state keys a template refers to, in order of appearance."""
    return PLACEHOLDER.findall(template)


def render(template: str, state: Mapping[str, Any]) -> str:
    """The template with every ``${name}`` replaced by the state's value for ``name``."""
    literals, names = _split(template)
    parts = [literals[0]]
    for name, literal in zip(names, literals[1:], strict=True):
        if name not in state:
            known = ", ".join(sorted(state)) or "none"
            raise TelemetryProblem(
                f"${{{name}}}",
                f"no state key {name!r} (state keys: {known}); add it to InitialState "
                "or set it with updateState",
            )
        parts.append(_as_text(state[name]))
        parts.append(literal)
    return "".join(parts)


@functools.lru_cache(maxsize=1024)
def _split(template: str) -> tuple[list[str], list[str]]:
    """A template's literal text around its placeholders, and the placeholders' names."""
    pieces = PLACEHOLDER.split(template)
    return pieces[0::2], pieces[1::2]


def _as_text(value: Any) -> str:
    kind = type(value)
    if kind is float:  # the common case first: a sensor reading
        return repr(value) if math.isfinite(value) else "null"
    if kind is int:
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)[1:-1]
    if value is None or isinstance(value, bool | dict | list):
        return json.dumps(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "null"
    return str(value)


def check(fields: Mapping[str, str], body: str) -> dict[str, Any]:
    """Parse ``body`` as JSON and check each schema field's presence and type; return it."""
    try:
        message = json.loads(body)
    except json.JSONDecodeError as exc:
        excerpt = body[max(0, exc.pos - 20) : exc.pos + 20]
        raise TelemetryProblem(
            "",
            f"rendered message is not JSON ({exc.msg} at column {exc.colno} near {excerpt!r}); "
            "quote string placeholders in the template, leave numbers bare",
        ) from None
    if not isinstance(message, dict):
        raise TelemetryProblem("", "rendered message must be a JSON object")
    for name, field_type in fields.items():
        if name not in message:
            raise TelemetryProblem(
                name, f"schema field {name!r} is missing from the rendered message"
            )
        value = message[name]
        field_type = field_type.lower()
        if type(value) in _PARSED_TYPES_OK.get(field_type, ()):
            continue  # json.loads gives exact types: no further test needed
        problem = type_problem(field_type, value)
        if problem:
            raise TelemetryProblem(name, problem)
    return message


#: The types json.loads returns that need no further test for a schema field type
#: (every message is checked, so this shortcut is taken millions of times).
_PARSED_TYPES_OK: dict[str, tuple[type, ...]] = {
    "integer": (int,),
    "double": (float, int),
    "boolean": (bool,),
    "text": (str,),
    "object": (dict, list),
}


def type_problem(field_type: str, value: Any) -> str | None:
    """Why ``value`` is not of the schema ``field_type``, or None when it is."""
    ok: bool
    if field_type == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif field_type == "double":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif field_type == "boolean":
        ok = isinstance(value, bool)
    elif field_type == "text":
        ok = isinstance(value, str)
    elif field_type == "object":
        ok = isinstance(value, dict | list)
    elif field_type == "binary":
        ok = isinstance(value, str) and _is_base64(value)
    elif field_type == "datetime":
        ok = isinstance(value, str) and _is_datetime(value)
    else:
        return f"unknown field type {field_type!r}; use one of {', '.join(FIELD_TYPE_NAMES)}"
    if ok:
        return None
    return f"expected {field_type}, got {json.dumps(value)} ({_json_type(value)})"


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "text"
    if value is None:
        return "null"
    return "object"


def _is_base64(value: str) -> bool:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _is_datetime(value: str) -> bool:
    try:
        dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def current_time(now: dt.datetime | None = None) -> str:
    """A time in the seed's context format yyyy-MM-dd'T'HH:mm:sszzz (zzz like +00:00)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.isoformat(timespec="seconds")


# -- Protobuf ---------------------------------------------------------------------------
#
# A message of ``"Format": "Protobuf"`` names its message type in ``ClassName``, as the
# original service's models do (there, a C# class: the .proto's csharp_namespace and the
# message's name). The template still renders JSON, checked as usual; that JSON fills
# the protobuf message, whose binary encoding is what the transports carry. The schema
# comes from the user, never from code a model names: a .proto file (``ProtoFile`` beside
# ClassName, or ``--proto FILE.proto``), compiled with protoc, or a compiled ``_pb2``
# module (``--proto``/``proto=`` only, since importing one runs it).

#: The content type of Protobuf telemetry, in every transport's content-type field.
PROTOBUF_CONTENT_TYPE = "application/x-protobuf"
#: The content type of every other message.
JSON_CONTENT_TYPE = "application/json"

#: What a user may give as a Protobuf schema: a .proto or _pb2.py path, a module name,
#: or an imported _pb2 module.
ProtoSource = str | Path | ModuleType


@dataclass(frozen=True, eq=False)
class ProtoMessage:
    """A protobuf message type that rendered telemetry is encoded to (and decoded from)."""

    full_name: str
    source: str  # the .proto file or module it came from, for messages
    message_class: Any  # the generated message class

    def encode(self, message: Mapping[str, Any]) -> bytes:
        """The binary encoding of a rendered, checked message; TelemetryProblem when the
        message and the protobuf type disagree (a field it lacks, a fraction for an int)."""
        from google.protobuf import json_format

        try:
            filled = json_format.ParseDict(dict(message), self.message_class())
        except json_format.ParseError as exc:
            raise TelemetryProblem(
                "",
                f"does not fit protobuf {self.full_name} of {self.source} ({_first_line(exc)}); "
                "make the MessageTemplate's fields and the .proto's agree",
            ) from None
        return filled.SerializeToString(deterministic=True)

    def decode(self, body: bytes) -> dict[str, Any]:
        """A received body as a dict of field name -> value (every field, defaults too)."""
        parsed = self.message_class()
        parsed.ParseFromString(body)
        return _as_dict(parsed)


def _as_dict(message: Any) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for field_descriptor in message.DESCRIPTOR.fields:
        value = getattr(message, field_descriptor.name)
        if field_descriptor.message_type is not None:
            if field_descriptor.message_type.GetOptions().map_entry:
                value = dict(value)
            elif _is_repeated(field_descriptor):
                value = [_as_dict(item) for item in value]
            else:
                value = _as_dict(value)
        elif _is_repeated(field_descriptor):
            value = list(value)
        result[field_descriptor.name] = value
    return result


def _is_repeated(field_descriptor: Any) -> bool:
    is_repeated = getattr(field_descriptor, "is_repeated", None)
    if is_repeated is not None:
        return bool(is_repeated)
    return bool(field_descriptor.label == field_descriptor.LABEL_REPEATED)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class ProtoCatalog:
    """The message types of some Protobuf schemas, looked up by a model's ClassName."""

    def __init__(self, messages: list[ProtoMessage], descriptors: list[Any]) -> None:
        self._messages = messages
        self._descriptors = descriptors

    @classmethod
    def load(cls, sources: Iterable[ProtoSource]) -> ProtoCatalog:
        """Every message type of the sources; TelemetryProblem naming a source that fails."""
        messages: list[ProtoMessage] = []
        descriptors: list[Any] = []
        for source in sources:
            for descriptor, origin in _load_source(source):
                descriptors.append(descriptor)
                messages.append(
                    ProtoMessage(descriptor.full_name, origin, _message_class(descriptor))
                )
        return cls(messages, descriptors)

    def extended(self, sources: Iterable[ProtoSource]) -> ProtoCatalog:
        """This catalog and the message types of more sources (looked up first)."""
        more = ProtoCatalog.load(sources)
        return ProtoCatalog(
            [*more._messages, *self._messages], [*more._descriptors, *self._descriptors]
        )

    def __bool__(self) -> bool:
        return bool(self._messages)

    def names(self) -> list[str]:
        return [m.full_name for m in self._messages]

    def find(self, class_name: str) -> ProtoMessage | None:
        """The message type a ClassName names: by its protobuf full name, by the .proto's
        csharp_namespace and the message's name (what the original service's ClassName
        is), else by the ClassName's last part when one message type alone has that name.
        TelemetryProblem when that last part names several."""
        pairs = list(zip(self._descriptors, self._messages, strict=True))
        for descriptor, message in pairs:
            if class_name in (descriptor.full_name, _csharp_name(descriptor)):
                return message
        short = class_name.rsplit(".", 1)[-1]
        found = [message for descriptor, message in pairs if descriptor.name == short]
        if len(found) > 1:
            names = ", ".join(f"{m.full_name} ({m.source})" for m in found)
            raise TelemetryProblem(
                "", f"ClassName {class_name!r} could be any of {names}; write the full name"
            )
        return found[0] if found else None


def _csharp_name(descriptor: Any) -> str:
    """The C# class protoc generates for a top-level message: csharp_namespace.Name."""
    namespace = descriptor.file.GetOptions().csharp_namespace
    if not namespace or descriptor.containing_type is not None:
        return ""
    return f"{namespace}.{descriptor.name}"


def _message_class(descriptor: Any) -> Any:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(descriptor)


def _load_source(source: ProtoSource) -> list[tuple[Any, str]]:
    """(message descriptor, origin) of every message type, nested ones too, of a source."""
    if isinstance(source, ModuleType):
        return _module_messages(source, source.__name__)
    path = Path(source)
    if path.suffix == ".proto":
        return _proto_file_messages(path)
    if path.suffix == ".py":
        return _module_messages(_import_file(path), str(path))
    text = str(source)
    try:
        module = importlib.import_module(text)
    except ImportError as exc:
        raise TelemetryProblem(
            "",
            f"{text}: not a .proto file, a _pb2.py file or an importable module ({exc}); "
            "pass FILE.proto, FILE_pb2.py or a module name such as mypackage.truck_pb2",
        ) from None
    return _module_messages(module, text)


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise TelemetryProblem("", f"{path}: no such _pb2.py file; check the path")
    name = f"_cirque_proto_{abs(hash(str(path.resolve())))}_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TelemetryProblem("", f"{path}: cannot import it as a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise TelemetryProblem(
            "", f"{path}: importing it failed ({type(exc).__name__}: {_first_line(exc)})"
        ) from None
    sys.modules[name] = module
    return module


def _module_messages(module: ModuleType, origin: str) -> list[tuple[Any, str]]:
    file_descriptor = getattr(module, "DESCRIPTOR", None)
    types = getattr(file_descriptor, "message_types_by_name", None)
    if types is None:
        raise TelemetryProblem(
            "",
            f"{origin}: not a compiled protobuf module (no DESCRIPTOR); pass the module "
            "protoc --python_out wrote (NAME_pb2) or the .proto itself",
        )
    return [(d, origin) for d in _with_nested(types.values())]


def _with_nested(descriptors: Iterable[Any]) -> list[Any]:
    found = []
    for descriptor in descriptors:
        found.append(descriptor)
        found.extend(_with_nested(descriptor.nested_types))
    return found


def _proto_file_messages(path: Path) -> list[tuple[Any, str]]:
    try:
        stat = path.stat()
    except OSError:
        raise TelemetryProblem("", f"{path}: no such .proto file; check the path") from None
    return _compiled(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _compiled(path_text: str, mtime_ns: int, size: int) -> list[tuple[Any, str]]:
    """A .proto's message types, compiled by protoc into a pool of its own (so two models'
    schemas may reuse a name); cached while the file is unchanged."""
    from google.protobuf import descriptor_pb2, descriptor_pool

    path = Path(path_text)
    file_set = descriptor_pb2.FileDescriptorSet()
    file_set.ParseFromString(_run_protoc(path))
    pool = descriptor_pool.DescriptorPool()
    for file_proto in file_set.file:  # dependencies come first
        pool.Add(file_proto)
    target = pool.FindFileByName(path.name)
    return [(d, str(path)) for d in _with_nested(target.message_types_by_name.values())]


def _protoc_command() -> list[str] | None:
    """protoc as grpcio-tools ships it (with the well-known types), else one on PATH."""
    if importlib.util.find_spec("grpc_tools") is not None:
        return [sys.executable, "-m", "grpc_tools.protoc"]
    protoc = shutil.which("protoc")
    return [protoc] if protoc else None


def _run_protoc(path: Path) -> bytes:
    command = _protoc_command()
    if command is None:
        raise TelemetryProblem(
            "",
            f"{path}: compiling a .proto needs protoc: pip install grpcio-tools (or put protoc "
            f"on PATH), or pass the module protoc --python_out=. {path.name} writes",
        )
    with tempfile.TemporaryDirectory(prefix="cirque-proto-") as folder:
        out = Path(folder) / "schema.desc"
        result = subprocess.run(
            [
                *command,
                f"--proto_path={path.parent}",
                f"--descriptor_set_out={out}",
                "--include_imports",
                str(path),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 or not out.exists():
            detail = (result.stderr.strip().splitlines() or [f"exit {result.returncode}"])[0]
            raise TelemetryProblem(
                "", f"{path}: protoc could not compile it ({detail}); fix the .proto"
            )
        return out.read_bytes()
