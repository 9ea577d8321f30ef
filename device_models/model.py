"""The device-model format: parse and validate a model file (JSON or YAML).

The format is the seed's (SchemaVersion, Id, Version, Name, Description, Protocol,
Simulation, Properties, Telemetry, CloudToDeviceMethods). Validation collects every
problem of a file, each as a DeviceModelError naming file:line, model id and field, so
``cirque devices validate`` can print them all; ``load_model`` raises the first. Line
numbers come from composing the same text as YAML (JSON is YAML for this purpose), so
JSON and YAML files share one way of pointing at a field. This module is pure: it reads
files, and imports nothing from Docker or the script engine.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pytest_cirque.core.errors import DeviceModelError, TelemetryProblem
from pytest_cirque.device_models import internal_scripts, telemetry
from pytest_cirque.device_models.telemetry import ProtoCatalog, ProtoMessage, ProtoSource

PROTOCOLS = ("AMQP", "MQTT", "HTTP")
SCRIPT_TYPES = ("javascript", "internal")
MESSAGE_FORMATS = ("JSON", "PROTOBUF")
SCHEMA_VERSION = "1.0.0"

#: Where the stock models live (one JSON file per model beside its scripts).
STOCK_DIR = Path(__file__).resolve().parent / "stock"
#: Where the original device simulation service keeps a model folder's scripts.
SCRIPTS_FOLDER = "scripts"

_TOP_LEVEL = (
    "SchemaVersion",
    "Id",
    "Version",
    "Name",
    "Description",
    "Protocol",
    "Simulation",
    "Properties",
    "Tags",
    "Telemetry",
    "CloudToDeviceMethods",
)
_REQUIRED_TOP_LEVEL = ("SchemaVersion", "Id", "Name", "Protocol", "Simulation")
_SIMULATION_KEYS = ("InitialState", "Interval", "Scripts")
_SCRIPT_KEYS = ("Type", "Path", "Params")
_TELEMETRY_KEYS = ("Interval", "MessageTemplate", "MessageSchema")
#: ClassName is the original service's (the Protobuf message type); ProtoFile is ours:
#: the .proto, relative to the model file, that defines it.
_SCHEMA_KEYS = ("Name", "Format", "Fields", "ClassName", "ProtoFile")
_INTERVAL = re.compile(r"^(\d+):([0-5]?\d):([0-5]?\d(?:\.\d+)?)$")


@dataclass(frozen=True, eq=False)
class ScriptRef:
    """One script of a model: a JavaScript file (resolved beside the model) or an internal one."""

    type: str  # "javascript" or "internal"
    path: str  # as written in the model
    file: Path | None  # the JavaScript file; None for internal scripts
    params: Mapping[str, Any] | None
    where: str  # model file:line that names it, for errors

    @property
    def name(self) -> str:
        """What errors call the script: its file for JavaScript, its Path for internal ones."""
        return str(self.file) if self.file else self.path


@dataclass(frozen=True, eq=False)
class MessageSchema:
    name: str
    format: str  # upper-case: JSON or PROTOBUF
    fields: Mapping[str, str]  # field name -> lower-cased type
    class_name: str = ""  # the Protobuf message type, as the model names it
    proto: ProtoMessage | None = None  # set for Format Protobuf

    @property
    def content_type(self) -> str:
        """What the transports announce the body as."""
        if self.proto is not None:
            return telemetry.PROTOBUF_CONTENT_TYPE
        return telemetry.JSON_CONTENT_TYPE


@dataclass(frozen=True, eq=False)
class TelemetrySpec:
    """One kind of message a device sends, each on its own interval."""

    interval: float  # seconds
    template: str
    schema: MessageSchema
    where: str  # model file:line of its MessageTemplate


@dataclass(frozen=True, eq=False)
class DeviceModel:
    """A parsed, validated device model."""

    id: str
    name: str
    version: str
    description: str
    protocol: str  # upper-case: AMQP, MQTT or HTTP
    initial_state: Mapping[str, Any]
    state_interval: float  # seconds between runs of the state scripts
    scripts: tuple[ScriptRef, ...]
    properties: Mapping[str, Any]
    telemetry: tuple[TelemetrySpec, ...]
    methods: Mapping[str, ScriptRef]
    source: Path
    tags: Mapping[str, Any] = field(default_factory=dict)

    def javascript(self) -> list[ScriptRef]:
        """Every JavaScript script of the model: state scripts, then methods."""
        refs = [*self.scripts, *self.methods.values()]
        return [ref for ref in refs if ref.type == "javascript"]


def parse_interval(text: Any) -> float:
    """Seconds in an "hh:mm:ss" interval (fractional seconds allowed: "00:00:00.5")."""
    match = _INTERVAL.match(text) if isinstance(text, str) else None
    if not match:
        raise ValueError(f'{text!r} is not an interval "hh:mm:ss" (e.g. "00:00:10")')
    hours, minutes, seconds = match.groups()
    value = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    if value <= 0:
        raise ValueError(f"interval {text!r} must be longer than zero")
    return value


def stock_models() -> dict[str, Path]:
    """The stock models shipped with the project: short name -> model file."""
    return {path.stem: path for path in sorted(STOCK_DIR.glob("*.json"))}


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A model file from a path, or the stock model of that short name ("elevator")."""
    path = Path(name_or_path)
    if path.exists() or path.suffix:
        return path
    stock = stock_models()
    if str(name_or_path) in stock:
        return stock[str(name_or_path)]
    raise DeviceModelError(
        f"{name_or_path}: no such model file or stock model; stock models: {', '.join(stock)}"
    )


ProtoSources = ProtoSource | Iterable[ProtoSource] | None


def load_model(
    name_or_path: str | Path,
    *,
    allow_outside: bool = False,
    proto: ProtoSources | ProtoCatalog = None,
) -> DeviceModel:
    """Parse and validate a model file (or a stock model by name); raise its first error.
    ``allow_outside`` lets its scripts live outside the model's folder; ``proto`` gives
    the schemas of its Protobuf messages (see ``proto_catalog``)."""
    path = resolve_model_path(name_or_path)
    model, errors = validate_model_file(path, allow_outside=allow_outside, proto=proto)
    if errors:
        more = f" (and {len(errors) - 1} more: run cirque devices validate)" if errors[1:] else ""
        raise DeviceModelError(f"{errors[0]}{more}")
    assert model is not None
    return model


def proto_catalog(proto: ProtoSources | ProtoCatalog) -> ProtoCatalog:
    """The message types of the Protobuf schemas a user gives (``--proto``, ``proto=``):
    .proto files, _pb2.py files, module names or modules, one or several. Raises a
    DeviceModelError naming the source that cannot be loaded."""
    if isinstance(proto, ProtoCatalog):
        return proto
    if proto is None:
        sources: list[ProtoSource] = []
    elif isinstance(proto, str | Path) or not isinstance(proto, Iterable):
        sources = [proto]
    else:
        sources = list(proto)
    try:
        return ProtoCatalog.load(sources)
    except TelemetryProblem as exc:
        raise DeviceModelError(f"protobuf schema {exc}") from None


def validate_model_file(
    path: str | Path,
    *,
    allow_outside: bool = False,
    proto: ProtoSources | ProtoCatalog = None,
) -> tuple[DeviceModel | None, list[DeviceModelError]]:
    """The model and every problem of the file; the model is None when there are problems.
    Script paths must stay inside the model's folder unless ``allow_outside``; ``proto``
    gives Protobuf schemas beyond the model's own ProtoFile keys."""
    path = Path(path)
    try:
        catalog = proto_catalog(proto)
    except DeviceModelError as exc:
        return None, [exc]
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [DeviceModelError(f"{path}: model file not found; check the path")]
    except (OSError, UnicodeDecodeError) as exc:
        return None, [DeviceModelError(f"{path}: cannot read model file ({exc})")]
    try:
        document = _parse_text(path, text)
    except DeviceModelError as exc:
        return None, [exc]
    checker = _Checker(path, text, document, allow_outside=allow_outside, catalog=catalog)
    model = checker.build()
    if checker.errors:
        lines_and_errors = zip(checker.error_lines, checker.errors, strict=True)
        return None, [error for _, error in sorted(lines_and_errors, key=lambda pair: pair[0])]
    return model, []


def _parse_text(path: Path, text: str) -> Any:
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            return yaml.load(text, Loader=_YamlLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else 1
            raise DeviceModelError(
                f"{path}:{line}: malformed YAML ({exc.problem}); fix the syntax"
            ) from None
        except yaml.YAMLError as exc:
            raise DeviceModelError(f"{path}:1: malformed YAML ({exc}); fix the syntax") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DeviceModelError(
            f"{path}:{exc.lineno}: malformed JSON ({exc.msg} at column {exc.colno}); fix the syntax"
        ) from None


class _YamlLoader(yaml.SafeLoader):
    """YAML without its 1.1 base-60 numbers, so an unquoted 00:01:30 stays an interval."""


def _no_sexagesimal(kind: str):
    base = getattr(yaml.SafeLoader, f"construct_yaml_{kind}")

    def construct(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
        if ":" in node.value:
            return node.value
        return base(loader, node)

    return construct


_YamlLoader.add_constructor("tag:yaml.org,2002:int", _no_sexagesimal("int"))
_YamlLoader.add_constructor("tag:yaml.org,2002:float", _no_sexagesimal("float"))


def _line_index(text: str) -> dict[tuple, int]:
    """Path of keys/indexes -> 1-based line where it appears; empty if the text won't compose."""
    index: dict[tuple, int] = {}
    try:
        # Tabs are fine JSON whitespace but not YAML indentation; same length, same lines.
        root = yaml.compose(text.replace("\t", " "), Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return index

    def walk(node: yaml.Node, path: tuple) -> None:
        index[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = key_node.value
                key_path = (*path, key)
                walk(value_node, key_path)
                index[key_path] = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    if root is not None:
        walk(root, ())
    return index


def _path_text(path: tuple) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


class _Checker:
    """Walks one parsed document, building the model and collecting every problem."""

    def __init__(
        self,
        path: Path,
        text: str,
        document: Any,
        *,
        allow_outside: bool,
        catalog: ProtoCatalog,
    ) -> None:
        self.path = path
        self.allow_outside = allow_outside
        self.catalog = catalog
        self.document = document
        self.lines = _line_index(text)
        self.errors: list[DeviceModelError] = []
        self.error_lines: list[int] = []  # the model file line of each of self.errors
        model_id = document.get("Id") if isinstance(document, dict) else None
        self.model_id = model_id if isinstance(model_id, str) and model_id else "?"

    def script_file(self, script_path: str, path: tuple) -> Path | None:
        """Where a script's Path points, as the original service resolves it: the model's
        folder, then its scripts/ subfolder. A file outside the model's folder is refused
        (a model must not make the tools read other files) unless allow_outside."""
        return self.local_file("script", script_path, path)

    def local_file(self, kind: str, file_path: str, path: tuple) -> Path | None:
        """A file a model names (a script, a .proto): in the model's folder or its
        scripts/ subfolder, and inside the model's folder unless allow_outside."""
        folder = self.path.parent.resolve()
        candidates = [folder / file_path, folder / SCRIPTS_FOLDER / file_path]
        file = next((c for c in candidates if c.is_file()), None)
        if file is None:
            self.fail(
                path,
                f"{kind} file {file_path!r} not found (looked in {folder} and its "
                f"{SCRIPTS_FOLDER}/ subfolder); paths are relative to the model file",
            )
            return None
        real = file.resolve()
        if not self.allow_outside and not real.is_relative_to(folder):
            self.fail(
                path,
                f"{kind} file {file_path!r} is outside the model's folder ({real}); move it "
                f"into {folder} or its {SCRIPTS_FOLDER}/, or pass --allow-outside",
            )
            return None
        return file

    def where(self, path: tuple) -> str:
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return f"{self.path}:{self.lines[path[:end]]}"
        return f"{self.path}:1"

    def fail(self, path: tuple, problem: str) -> None:
        where = self.where(path)
        error = DeviceModelError(f"{where}: model {self.model_id}: {_path_text(path)}: {problem}")
        self.errors.append(error)
        self.error_lines.append(int(where.rsplit(":", 1)[1]))

    def keys(self, value: Mapping, path: tuple, allowed: tuple, required: tuple) -> None:
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(allowed)}"
                self.fail((*path, key), f"unknown field {key!r}; {hint}")
        for key in required:
            if key not in value:
                self.fail((*path, key) if path else (key,), f"required field {key!r} is missing")

    def text(self, value: Mapping, key: str, path: tuple, default: str = "") -> str:
        item = value.get(key, default)
        if not isinstance(item, str):
            self.fail((*path, key), f"must be a string (got {item!r})")
            return default
        return item

    def mapping(self, value: Any, path: tuple) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(path, f"must be an object (got {type(value).__name__})")
            return {}
        return value

    def interval(self, value: Mapping, path: tuple) -> float:
        try:
            return parse_interval(value.get("Interval"))
        except ValueError as exc:
            self.fail((*path, "Interval"), str(exc))
            return 1.0

    def build(self) -> DeviceModel | None:
        doc = self.document
        if not isinstance(doc, dict):
            self.fail((), "a device model must be an object with SchemaVersion, Id, Name, ...")
            return None
        self.keys(doc, (), _TOP_LEVEL, _REQUIRED_TOP_LEVEL)
        if "SchemaVersion" in doc and doc["SchemaVersion"] != SCHEMA_VERSION:
            self.fail(
                ("SchemaVersion",),
                f"unsupported {doc['SchemaVersion']!r}; the only schema version is "
                f"{SCHEMA_VERSION!r}",
            )
        model_id = self.text(doc, "Id", ())
        if "Id" in doc and not model_id.strip():
            self.fail(("Id",), "must not be empty")
        protocol = self.text(doc, "Protocol", (), "MQTT")
        if "Protocol" in doc and protocol.upper() not in PROTOCOLS:
            self.fail(
                ("Protocol",), f"unknown protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}"
            )
        simulation = self.mapping(doc.get("Simulation"), ("Simulation",))
        self.keys(simulation, ("Simulation",), _SIMULATION_KEYS, ("Interval",))
        initial_state = self.mapping(simulation.get("InitialState"), ("Simulation", "InitialState"))
        state_interval = (
            self.interval(simulation, ("Simulation",)) if "Interval" in simulation else 1.0
        )
        scripts = self.scripts(simulation.get("Scripts", []), ("Simulation", "Scripts"))
        properties = self.mapping(doc.get("Properties"), ("Properties",))
        tags = self.mapping(doc.get("Tags"), ("Tags",))
        messages = self.telemetry(doc.get("Telemetry", []), initial_state)
        methods = self.methods(doc.get("CloudToDeviceMethods", {}))
        if self.errors:
            return None
        return DeviceModel(
            id=model_id,
            name=self.text(doc, "Name", ()),
            version=self.text(doc, "Version", (), "0.0.0"),
            description=self.text(doc, "Description", ()),
            protocol=protocol.upper(),
            initial_state=initial_state,
            state_interval=state_interval,
            scripts=tuple(scripts),
            properties=properties,
            telemetry=tuple(messages),
            methods=methods,
            source=self.path,
            tags=tags,
        )

    def scripts(self, value: Any, path: tuple) -> list[ScriptRef]:
        if not isinstance(value, list):
            self.fail(path, "must be a list of {Type, Path} objects")
            return []
        refs = []
        for i, item in enumerate(value):
            ref = self.script(item, (*path, i), allow_params=True)
            if ref:
                refs.append(ref)
        return refs

    def script(self, item: Any, path: tuple, allow_params: bool) -> ScriptRef | None:
        if not isinstance(item, dict):
            self.fail(path, "must be an object with Type and Path")
            return None
        allowed = _SCRIPT_KEYS if allow_params else _SCRIPT_KEYS[:2]
        self.keys(item, path, allowed, ("Type", "Path"))
        script_type = self.text(item, "Type", path, "javascript").lower()
        script_path = self.text(item, "Path", path)
        params = item.get("Params")
        if "Type" in item and script_type not in SCRIPT_TYPES:
            self.fail(
                (*path, "Type"), f"unknown script type {item['Type']!r}; use javascript or internal"
            )
            return None
        if not script_path:
            return None
        if script_type == "internal":
            if not allow_params:
                self.fail((*path, "Type"), "methods must be javascript scripts")
                return None
            if script_path.lower() not in internal_scripts.INTERNAL_SCRIPTS:
                known = ", ".join(sorted(internal_scripts.INTERNAL_SCRIPTS))
                self.fail(
                    (*path, "Path"), f"unknown internal script {script_path!r}; known: {known}"
                )
                return None
            problems = internal_scripts.check_params(script_path, params)
            for sub_path, problem in problems:
                self.fail((*path, "Params", *sub_path), problem)
            if problems:
                return None
            assert isinstance(params, Mapping)  # check_params found no problem
            normalized = internal_scripts.normalize_params(script_path, params)
            return ScriptRef("internal", script_path, None, normalized, self.where((*path, "Path")))
        if params is not None and not isinstance(params, dict):
            self.fail((*path, "Params"), "must be an object (it becomes main's 4th argument)")
        file = self.script_file(script_path, (*path, "Path"))
        if file is None:
            return None
        return ScriptRef("javascript", script_path, file, params, self.where((*path, "Path")))

    def telemetry(self, value: Any, initial_state: Mapping[str, Any]) -> list[TelemetrySpec]:
        if not isinstance(value, list):
            self.fail(("Telemetry",), "must be a list of messages")
            return []
        specs = []
        for i, item in enumerate(value):
            path = ("Telemetry", i)
            if not isinstance(item, dict):
                self.fail(path, "must be an object with Interval, MessageTemplate, MessageSchema")
                continue
            self.keys(item, path, _TELEMETRY_KEYS, _TELEMETRY_KEYS)
            interval = self.interval(item, path)
            template = self.text(item, "MessageTemplate", path)
            schema = self.schema(item.get("MessageSchema"), (*path, "MessageSchema"))
            if schema is None or "MessageTemplate" not in item:
                continue
            # Telemetry may fire before any state script runs: InitialState alone must render
            # (and, for Protobuf, fit its message type).
            try:
                message = telemetry.check(schema.fields, telemetry.render(template, initial_state))
                if schema.proto is not None:
                    schema.proto.encode(message)
            except TelemetryProblem as exc:
                self.fail(
                    (*path, "MessageTemplate"),
                    f"message {schema.name!r} rendered from InitialState: {exc}",
                )
                continue
            specs.append(
                TelemetrySpec(interval, template, schema, self.where((*path, "MessageTemplate")))
            )
        return specs

    def schema(self, value: Any, path: tuple) -> MessageSchema | None:
        if not isinstance(value, dict):
            if value is not None:
                self.fail(path, "must be an object with Name, Format, Fields")
            return None
        errors_before = len(self.errors)
        self.keys(value, path, _SCHEMA_KEYS, ("Name", "Fields"))
        name = self.text(value, "Name", path)
        message_format = self.text(value, "Format", path, "JSON")
        if message_format.upper() not in MESSAGE_FORMATS:
            self.fail(
                (*path, "Format"), f"unsupported format {message_format!r}; use JSON or Protobuf"
            )
        fields = self.mapping(value.get("Fields"), (*path, "Fields"))
        normalized = {}
        for field_name, field_type in fields.items():
            if not isinstance(field_type, str) or field_type.lower() not in telemetry.FIELD_TYPES:
                self.fail(
                    (*path, "Fields", field_name),
                    f"unknown field type {field_type!r}; use one of "
                    f"{', '.join(telemetry.FIELD_TYPE_NAMES)} (any case)",
                )
                continue
            normalized[field_name] = field_type.lower()
        class_name = self.text(value, "ClassName", path)
        proto = None
        if message_format.upper() == "PROTOBUF" and len(self.errors) == errors_before:
            proto = self.proto_message(value, name, class_name, path)
        elif "ProtoFile" in value and message_format.upper() != "PROTOBUF":
            self.fail(
                (*path, "ProtoFile"),
                f"ProtoFile is for Format Protobuf (this message is {message_format}); "
                'remove it or set "Format": "Protobuf"',
            )
        if len(self.errors) > errors_before:
            return None
        return MessageSchema(name, message_format.upper(), normalized, class_name, proto)

    def proto_message(
        self, value: Mapping, name: str, class_name: str, path: tuple
    ) -> ProtoMessage | None:
        """The protobuf type a Protobuf message's ClassName names, from the model's
        ProtoFile or the schemas the user gave; a one-line refusal when there is none."""
        if not class_name:
            self.fail(
                (*path, "ClassName"),
                f"Protobuf message {name!r} needs ClassName, the protobuf message type to "
                'encode it with (e.g. "ClassName": "Truck")',
            )
            return None
        catalog = self.catalog
        proto_file = self.text(value, "ProtoFile", path)
        if proto_file:
            file = self.local_file("ProtoFile", proto_file, (*path, "ProtoFile"))
            if file is None:
                return None
            try:
                catalog = self.catalog.extended([file])
            except TelemetryProblem as exc:
                self.fail((*path, "ProtoFile"), str(exc))
                return None
        try:
            found = catalog.find(class_name)
        except TelemetryProblem as exc:
            self.fail((*path, "ClassName"), str(exc))
            return None
        if found is not None:
            return found
        known = f" (the schemas given define {', '.join(catalog.names())})" if catalog else ""
        self.fail(
            (*path, "ClassName"),
            f"no protobuf schema for Protobuf message {name!r} (ClassName {class_name!r}){known}; "
            'add "ProtoFile": "FILE.proto" beside ClassName, or pass --proto FILE.proto '
            "or a compiled _pb2 module (device_simulation(..., proto=...))",
        )
        return None

    def methods(self, value: Any) -> dict[str, ScriptRef]:
        methods = {}
        for name, item in self.mapping(value, ("CloudToDeviceMethods",)).items():
            ref = self.script(item, ("CloudToDeviceMethods", name), allow_params=False)
            if ref:
                methods[name] = ref
        return methods
