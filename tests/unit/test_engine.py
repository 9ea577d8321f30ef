"""The QuickJS script engine: main's arguments, host functions, limits, sleep, isolation."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import quickjs

from pytest_cirque.core.errors import CirqueError, ScriptError
from pytest_cirque.device_models.engine import (
    BINDING,
    QUICKJS_BINDING,
    QUICKJS_VERSION,
    ModelEngine,
    ScriptLimits,
    check_scripts,
    engine_report,
)
from pytest_cirque.device_models.model import load_model

DATA = Path(__file__).parent / "data"
SCRIPTS = DATA / "scripts"


def line_of(path: Path, text: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")


@pytest.fixture(scope="module")
def model():
    return load_model(DATA / "scripted.json")


@pytest.fixture(scope="module")
def engine(model):
    return ModelEngine(model)


def call(engine, model, method, *, device_id="scripted.1", context=None, state=None, **kw):
    return engine.run(
        model.methods[method],
        device_id=device_id,
        context={"deviceId": device_id, **(context or {})},
        state=state if state is not None else {"count": 0},
        properties={"Firmware": "1.0"},
        method=True,
        **kw,
    )


def test_the_seeds_elevator_script_runs_unchanged():
    model = load_model(DATA / "seed_elevator" / "elevator-01.json")
    engine = ModelEngine(model)
    state = {**model.initial_state, "moving": True, "floor": 5}
    step = engine.run(
        model.scripts[0],
        device_id="elevator-01.0",
        context={"currentTime": "2024-05-01T10:00:00+00:00", "deviceId": "elevator-01.0"},
        state=state,
        properties=dict(model.properties),
        seed=7,
    )
    (update,) = step.updates
    assert update[0] == "state"
    new_state = update[1]
    assert new_state["floor"] in (4, 6)
    assert 9.5 <= new_state["vibration"] <= 10.5
    assert 74.25 <= new_state["temperature"] <= 75.75


def test_main_gets_context_state_properties_and_params(engine, model):
    step = engine.run(
        model.scripts[0],
        device_id="scripted.3",
        context={"currentTime": "now", "deviceId": "scripted.3", "deviceModel": "Scripted"},
        state={"count": 4},
        properties={"Firmware": "1.0"},
    )
    assert step.result == {
        "context": {"currentTime": "now", "deviceId": "scripted.3", "deviceModel": "Scripted"},
        "state": {"count": 4},
        "properties": {"Firmware": "1.0"},
        "params": {"gain": 2},
    }
    assert step.updates == [("log", "echo for scripted.3")]


def test_a_script_without_params_gets_null_as_its_fourth_argument(engine, model):
    step = call(engine, model, "Echo", context={"Speed": 3})
    assert step.result["params"] is None
    assert step.result["context"]["Speed"] == 3


def test_updates_come_back_in_order(engine, model):
    step = call(engine, model, "Updates")
    assert step.updates == [
        ("state", {"a": 1}),
        ("property", "Colour", "red"),
        ("state", {"b": 2}),
        ("log", "done"),
    ]
    assert step.sleep_ms is None


def test_a_syntax_error_names_the_script_file_and_line():
    model = load_model(DATA / "syntax_error.json")
    problems = check_scripts(model)
    syntax_js = SCRIPTS / "syntax_error.js"
    assert str(problems[0]).startswith(f"{syntax_js}:{line_of(syntax_js, 'var broken')}: ")
    assert "SyntaxError" in str(problems[0])
    assert "no function main" in str(problems[1])
    with pytest.raises(ScriptError, match="SyntaxError"):
        ModelEngine(model)


def test_an_exception_in_main_names_file_line_device_and_cause(engine, model):
    with pytest.raises(ScriptError) as caught:
        call(engine, model, "Throw", device_id="scripted.0")
    throws_js = SCRIPTS / "throws.js"
    message = str(caught.value)
    assert message.startswith(f"{throws_js}:{line_of(throws_js, 'throw new Error')}: ")
    assert "device scripted.0" in message
    assert "exception in main: Error: sensor unplugged" in message
    assert "\n" not in message


def test_an_infinite_loop_fails_that_call_only(engine, model):
    with pytest.raises(ScriptError) as caught:
        call(engine, model, "Loop", context={"always": True})
    loop_js = SCRIPTS / "infinite_loop.js"
    message = str(caught.value)
    assert message.startswith(f"{loop_js}:")
    line = int(message[len(str(loop_js)) + 1 :].split(":")[0])
    assert line_of(loop_js, "function spin") <= line < line_of(loop_js, "function main")
    assert "time limit of 100 ms exceeded" in message
    assert "device scripted.1" in message
    assert call(engine, model, "Updates").updates[0] == ("state", {"a": 1})


# Out of memory, the quickjs package (QuickJS 2021-03-27) may free the pending error while
# it writes the error's backtrace and then crash the process (use after free in
# build_backtrace, bellard/quickjs#533); quickjs-ng, the binding we depend on, does not.
# Memory bombs run in a child process, so a crash fails one test with its cause instead
# of ending the whole test session.
BOMB_CHILD = """
import json, sys
from pathlib import Path
from pytest_cirque.device_models.engine import ModelEngine
from pytest_cirque.device_models.model import load_model
from pytest_cirque.core.errors import ScriptError

model = load_model(Path(sys.argv[1]))
rounds, fresh = int(sys.argv[2]), sys.argv[3] == "fresh"

def call(engine, method):
    return engine.run(model.methods[method], device_id="scripted.1",
        context={"deviceId": "scripted.1"}, state={"count": 0},
        properties={"Firmware": "1.0"}, method=True)

engine = ModelEngine(model)
for _ in range(rounds):
    engine = ModelEngine(model) if fresh else engine
    call(engine, "Echo")
    try:
        call(engine, "Bomb")
    except ScriptError as exc:
        bomb = str(exc)
    else:
        bomb = "no ScriptError"
    after = call(engine, "Updates").updates[0]
    print(json.dumps({"bomb": bomb, "after": after}), flush=True)
"""


def run_memory_bombs(rounds: int, *, fresh: bool) -> list[dict]:
    """Run ``rounds`` memory bombs in a child process; return what each call reported."""
    child = subprocess.run(
        [
            sys.executable,
            "-X",
            "faulthandler",
            "-c",
            BOMB_CHILD,
            str(DATA / "scripted.json"),
            str(rounds),
            "fresh" if fresh else "same",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert child.returncode == 0, (
        f"the memory bomb child exited with {child.returncode} after "
        f"{len(child.stdout.splitlines())} of {rounds} bombs (negative: killed by that "
        f"signal; QuickJS crashes out of memory without the build_backtrace fix; "
        f"{engine_report()[1]}):\n"
        f"{child.stderr[-2000:]}"
    )
    return [json.loads(line) for line in child.stdout.splitlines()]


def test_a_memory_bomb_fails_that_call_only():
    (reply,) = run_memory_bombs(1, fresh=False)
    assert "memory limit of 8 MiB exceeded" in reply["bomb"]
    assert reply["bomb"].startswith(f"{SCRIPTS / 'memory_bomb.js'}:")
    assert reply["after"] == ["state", {"a": 1}]


def test_the_engine_is_the_released_binding_with_the_out_of_memory_fix():
    """What pip installs is what runs here: quickjs-ng as released, no local build."""
    fixed, detail, meaning = engine_report()
    assert (QUICKJS_BINDING, fixed) == (BINDING, True), f"{detail}; {meaning}"
    assert "+" not in QUICKJS_VERSION, f"{detail}: a local build, not the released one"


def test_many_memory_bombs_never_crash_the_process():
    replies = run_memory_bombs(100, fresh=True)
    assert len(replies) == 100
    assert all("memory limit of 8 MiB exceeded" in reply["bomb"] for reply in replies)
    assert all(reply["after"] == ["state", {"a": 1}] for reply in replies)


HOARDER_JS = """"use strict";
function main(context, previousState, previousProperties) {
    var hoard = [];
    for (;;) {
        hoard.push(new Array(1024).fill("x".repeat(64)));
    }
}
"""


def test_a_fleet_whose_state_script_allocates_without_bound_runs_to_the_end(
    tmp_path, http_endpoint
):
    """`cirque devices run`: every call hits the memory limit; each fails its device's
    call, reported with file:line and device, and the run ends normally (exit 1 for the
    script errors), where the quickjs package crashed the process within the first second."""
    (tmp_path / "hoard.js").write_text(HOARDER_JS)
    model = {
        "SchemaVersion": "1.0.0",
        "Id": "hoarder",
        "Name": "Hoarder",
        "Protocol": "HTTP",
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
    (tmp_path / "hoarder.json").write_text(json.dumps(model))
    result = subprocess.run(
        [
            sys.executable, "-X", "faulthandler", "-m", "pytest_cirque.cli", "devices", "run",
            "--model", str(tmp_path / "hoarder.json"), "--count", "4",
            "--broker", http_endpoint.url, "--duration", "2", "--seed", "1",
        ],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr[-2000:]
    assert result.returncode == 1, output  # negative: killed by that signal
    lines = result.stdout.splitlines()
    (summary,) = [line for line in lines if line.startswith("done: ")]
    assert summary.startswith("done: devices online 4/4 | "), output
    assert "failures 0" in summary and "script errors 0" not in summary, output
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors, output
    # Out of memory the stack may be lost too: then the line is where main is defined.
    hoard_js = tmp_path / "hoard.js"
    lines_ok = {line_of(hoard_js, "hoard.push"), line_of(hoard_js, "function main")}
    for line in errors:
        found = re.fullmatch(
            rf"error: {re.escape(str(hoard_js))}:(\d+): device hoarder\.[0-3]: "
            r"memory limit of 8 MiB exceeded \(ScriptLimits\.memory_bytes\); .*",
            line,
        )
        assert found and int(found.group(1)) in lines_ok, output


def test_endless_recursion_is_a_stack_overflow(engine, model):
    with pytest.raises(ScriptError, match="stack overflow"):
        call(engine, model, "Recurse")


def test_limits_are_settable(model):
    engine = ModelEngine(model, ScriptLimits(time_seconds=0.02))
    with pytest.raises(ScriptError, match="time limit of 20 ms"):
        call(engine, model, "Loop", context={"always": True})


def test_sleep_stops_the_call_and_a_replay_goes_on_from_there(engine, model):
    steps = []
    resume = skip = 0
    while True:
        step = call(
            engine,
            model,
            "Sleepy",
            context={"StepMilliseconds": 250},
            resume=resume,
            skip=skip,
            seed=42,
            start_ms=1_000_000,
        )
        steps.append(step)
        skip += len(step.updates)
        if step.sleep_ms is None:
            break
        resume += 1
    assert [s.sleep_ms for s in steps] == [250, 250, 250, None]
    assert [s.updates for s in steps] == [
        [("property", "Stage", "download")],
        [("property", "Stage", "apply")],
        [("property", "Stage", "reboot")],
        [("state", {"stages_done": 3})],
    ]
    result = steps[-1].result
    assert result["elapsed"] == 750  # Date follows the sleeps, not the replays
    assert len(set(result["draws"])) == 3
    again = call(engine, model, "Sleepy", resume=3, skip=3, seed=42, start_ms=0)
    assert again.result["draws"] == result["draws"]  # same seed, same path


def test_sleep_is_for_method_scripts_only(engine, model):
    with pytest.raises(ScriptError, match=r"sleep\(\) is only available in method scripts"):
        engine.run(
            model.methods["StateSleep"],
            device_id="scripted.1",
            context={},
            state={},
            properties={},
            method=False,
        )


def test_a_call_leaves_nothing_behind_for_the_next(engine, model):
    first = call(engine, model, "Leak").result
    second = call(engine, model, "Leak", device_id="scripted.2").result
    for found in (first, second):
        assert found["calls"] == 1
        assert found["global"] == "undefined"
        assert found["proto"] == "undefined"
        assert found["globalError"] == "TypeError"
        assert found["protoError"] == "TypeError"
        assert found["mathError"] == "TypeError"


def test_main_may_return_the_state_the_old_way(engine, model):
    assert call(engine, model, "ReturnsState", state={"count": 1}).result == {"count": 2}


def test_update_state_wants_an_object_and_says_where_it_was_called(engine, model):
    with pytest.raises(ScriptError) as caught:
        call(engine, model, "BadUpdate")
    bad_js = SCRIPTS / "bad_update.js"
    assert str(caught.value).startswith(f"{bad_js}:{line_of(bad_js, 'updateState(')}: ")
    assert "updateState expects an object of state keys" in str(caught.value)


def test_a_script_that_catches_the_sleep_still_waits_for_it(engine, model):
    first = call(engine, model, "CatchesSleep")
    assert first.sleep_ms == 50
    assert first.updates == [("property", "Stage", "before")]
    second = call(engine, model, "CatchesSleep", resume=1, skip=1)
    assert second.sleep_ms is None
    assert second.updates == [("property", "Stage", "after")]


def test_an_engine_is_used_only_on_the_thread_that_built_it(model):
    """QuickJS crashes when two threads touch one runtime, even one after the other."""
    with ThreadPoolExecutor(max_workers=1) as owner:
        engine = owner.submit(ModelEngine, model).result()
        with pytest.raises(CirqueError, match="only on the thread that built it"):
            call(engine, model, "Echo")
        with pytest.raises(CirqueError, match="only on the thread that built it"):
            engine.close()
        assert owner.submit(call, engine, model, "Echo").result().result["state"] == {"count": 0}
        owner.submit(engine.close).result()
    assert engine.closed


def test_a_closed_engine_says_so(model):
    engine = ModelEngine(model)
    engine.close()
    engine.close()
    with pytest.raises(CirqueError, match="closed"):
        call(engine, model, "Echo")


# Devices of one model share one QuickJS context: each attack below runs as device .0 of a
# two-device model, interleaved with device .1, which must compute exactly what its own
# script says. Each case: (what device .0 does, what device .1 reports, what it must be).
ATTACKS = {
    "math_counter": (
        "Math.counter = (Math.counter || 0) + 1;",
        "{ counter: typeof Math.counter, floor: Math.floor(2.5) }",
        {"counter": "undefined", "floor": 2},
    ),
    "date_now": (
        "Date.now = function () { return 42; };",
        "{ now: Date.now(), year: new Date().getUTCFullYear() }",
        {"now": 1_700_000_000_000, "year": 2023},
    ),
    "engine_script_table": (
        "__cirque_scripts[Object.keys(__cirque_scripts)[0]] = function () {\n"
        "        return function () { updateState({ sent: 777 }); };\n"
        "    };",
        "{ sent: previousState.count + 1 }",
        {"sent": 5},
    ),
    "every_global": (
        "Reflect.ownKeys(globalThis).forEach(function (name) { globalThis[name] = 777; });",
        "{ sent: Number(previousState.count) + 1, json: JSON.stringify([1]) }",
        {"sent": 5, "json": "[1]"},
    ),
    "object_prototype": (
        "Object.prototype.polluted = 777;",
        "{ polluted: typeof ({}).polluted, keys: Object.keys({ a: 1 }) }",
        {"polluted": "undefined", "keys": ["a"]},
    ),
    "array_prototype": (
        "Array.prototype.push = function () { return 777; };",
        "{ length: [].push(1, 2), joined: [1, 2].map(String).join('+') }",
        {"length": 2, "joined": "1+2"},
    ),
    "array_iterator": (
        "Object.getPrototypeOf([][Symbol.iterator]()).next = function () {\n"
        "        return { done: true };\n"
        "    };",
        "{ total: (function () { var t = 0; for (var x of [1, 2, 3]) { t += x; } return t; })() }",
        {"total": 6},
    ),
    "host_function": (
        "updateState.shared = (updateState.shared || 0) + 1;",
        "{ shared: typeof updateState.shared }",
        {"shared": "undefined"},
    ),
    "stack_traces": (
        "Error.prepareStackTrace = function () { return 'nowhere'; };",
        "{ stack: new Error('x').stack.indexOf('at main') >= 0 }",
        {"stack": True},
    ),
}

ATTACK_JS = """{strict}
// Device .0 attacks the context it shares with the other devices of its model.
function main(context, previousState, previousProperties) {{
    if (context.deviceId === "attack.0") {{
        {attack}  // the attack
    }}
    updateState({victim});
}}
"""


def attack_model(tmp_path: Path, script: str, methods: dict[str, str] | None = None):
    """A one-model fleet whose state script is ``script`` (and methods, name -> source)."""
    files = {"attack.js": script, **{f"{name}.js": text for name, text in (methods or {}).items()}}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    model = {
        "SchemaVersion": "1.0.0",
        "Id": "attack",
        "Name": "Attack",
        "Protocol": "MQTT",
        "Simulation": {
            "InitialState": {"count": 4},
            "Interval": "00:00:01",
            "Scripts": [{"Type": "javascript", "Path": "attack.js"}],
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
        "CloudToDeviceMethods": {
            name: {"Type": "javascript", "Path": f"{name}.js"} for name in methods or {}
        },
    }
    (tmp_path / "attack.json").write_text(json.dumps(model))
    return load_model(tmp_path / "attack.json")


def run_device(engine, model, device_id: str, ref=None):
    return engine.run(
        ref or model.scripts[0],
        device_id=device_id,
        context={"deviceId": device_id},
        state={"count": 4},
        properties={},
        method=ref is not None,
        start_ms=1_700_000_000_000,
    )


@pytest.mark.parametrize("name", ATTACKS)
def test_a_strict_device_cannot_change_another_of_its_model(tmp_path, name):
    """The refused write throws, reported with file:line and the attacking device; the
    victim, before and after every attack, computes what its script says."""
    attack, victim, expected = ATTACKS[name]
    source = ATTACK_JS.format(strict='"use strict";', attack=attack, victim=victim)
    model = attack_model(tmp_path, source)
    engine = ModelEngine(model)
    attack_js = tmp_path / "attack.js"
    for _ in range(3):
        assert run_device(engine, model, "attack.1").updates == [("state", expected)]
        with pytest.raises(ScriptError) as caught:
            run_device(engine, model, "attack.0")
        message = str(caught.value)
        first_line = attack.splitlines()[0].strip()
        assert message.startswith(f"{attack_js}:{line_of(attack_js, first_line)}: "), message
        assert ": device attack.0: exception in main: " in message
        assert "\n" not in message
    assert run_device(engine, model, "attack.1").updates == [("state", expected)]


@pytest.mark.parametrize("name", [n for n in ATTACKS if n != "engine_script_table"])
def test_a_sloppy_device_cannot_change_another_of_its_model(tmp_path, name):
    """Not strict: the refused write does nothing, silently, as sloppy mode says."""
    attack, victim, expected = ATTACKS[name]
    source = ATTACK_JS.format(strict="// not strict", attack=attack, victim=victim)
    model = attack_model(tmp_path, source)
    engine = ModelEngine(model)
    for _ in range(3):
        assert run_device(engine, model, "attack.0").updates == [("state", expected)]
        assert run_device(engine, model, "attack.1").updates == [("state", expected)]


def test_a_refused_write_says_the_built_ins_are_frozen(tmp_path):
    source = ATTACK_JS.format(
        strict='"use strict";', attack=ATTACKS["math_counter"][0], victim="{}"
    )
    engine = ModelEngine(attack_model(tmp_path, source))
    with pytest.raises(ScriptError) as caught:
        run_device(engine, engine.model, "attack.0")
    assert str(caught.value).endswith(
        "exception in main: TypeError: object is not extensible in main; built-ins, Math, "
        "Date and the global object are frozen (devices share them): keep values in "
        "variables of the script's own"
    )


def test_another_devices_error_still_names_its_own_file_and_line(tmp_path):
    """Device .0 tries to rewrite how stacks are written; device .1's error keeps its line."""
    throws = (
        '"use strict";\n'
        "function main(context) {\n"
        "    try { Error.prepareStackTrace = function () { return ''; }; } catch (e) {}\n"
        "    try { Error.stackTraceLimit = 0; } catch (e) {}\n"
        "    throw new Error('broken on ' + context.deviceId);\n"
        "}\n"
    )
    model = attack_model(tmp_path, throws)
    engine = ModelEngine(model)
    for device in ("attack.0", "attack.1"):
        with pytest.raises(ScriptError) as caught:
            run_device(engine, model, device)
        assert str(caught.value) == (
            f"{tmp_path / 'attack.js'}:5: device {device}: exception in main: "
            f"Error: broken on {device} in main"
        )


# Walks everything a script can reach (its scope, the global object, and what only
# instances lead to) and lists what is not frozen and every setter found.
WALK_JS = """"use strict";
function main(context) {
    function* generator() {}
    async function asyncFunction() {}
    async function* asyncGenerator() {}
    var proto = Object.getPrototypeOf;
    var roots = [globalThis, Math, Date, log, updateState, updateProperty, sleep,
        proto([][Symbol.iterator]()), proto(""[Symbol.iterator]()), proto(new Map().entries()),
        proto(new Set().values()), proto("".matchAll(/a/g)), proto(generator),
        proto(proto(generator())), proto(asyncFunction), proto(asyncGenerator),
        proto(proto(asyncGenerator())), proto(asyncFunction()), proto(new Date()),
        proto((function () { return arguments; })()), proto(/a/), proto(new Uint8Array(1))];
    if (typeof Iterator === "function") {
        roots.push(proto([].values().map(function (x) { return x; })));
        roots.push(proto(Iterator.from({ next: function () { return { done: true }; } })));
    }
    var seen = new Set(), open = [], setters = [], todo = roots.map(function (r) {
        return ["root", r];
    });
    while (todo.length > 0) {
        var item = todo.pop(), path = item[0], value = item[1];
        if (value === null || (typeof value !== "object" && typeof value !== "function") ||
            seen.has(value)) { continue; }
        seen.add(value);
        if (!Object.isFrozen(value)) { open.push(path); }
        Reflect.ownKeys(value).forEach(function (key) {
            var d = Object.getOwnPropertyDescriptor(value, key), name = path + "." + String(key);
            if ("value" in d) { todo.push([name, d.value]); return; }
            todo.push([name, d.get], [name, d.set]);
            if (d.set) { setters.push(String(key)); }
        });
        todo.push([path + ".__proto__", proto(value)]);
    }
    return { reached: seen.size, open: open, setters: setters.sort(),
             globals: Reflect.ownKeys(globalThis).map(String),
             scope: [typeof log, typeof updateState, typeof updateProperty, typeof sleep],
             onGlobal: ["log", "updateState", "updateProperty", "sleep"].filter(function (n) {
                 return n in globalThis;
             }) };
}
"""


def test_everything_a_script_can_reach_is_frozen(tmp_path):
    model = attack_model(tmp_path, ATTACK_JS.format(strict="", attack="", victim="{}"),
                         {"Walk": WALK_JS})  # fmt: skip
    engine = ModelEngine(model)
    found = run_device(engine, model, "attack.0", model.methods["Walk"]).result
    assert found["reached"] > 300  # the walk did get through the built-ins
    assert found["open"] == []
    # Each remaining setter refuses frozen objects or acts on the object it is called on
    # alone: __proto__, the Function.prototype poison pills, Error.prototype.stack and
    # Iterator.prototype's constructor and toStringTag (refuse the prototype itself).
    allowed = {"__proto__", "caller", "arguments", "stack", "constructor",
               "Symbol(Symbol.toStringTag)"}  # fmt: skip
    assert set(found["setters"]) <= allowed, found["setters"]


def test_a_script_finds_only_the_standard_built_ins_on_the_global_object(tmp_path):
    """No engine internal is reachable by a global name: the global object holds what a
    fresh QuickJS context holds; log, updateState, updateProperty and sleep are in the
    script's scope only."""
    model = attack_model(tmp_path, ATTACK_JS.format(strict="", attack="", victim="{}"),
                         {"Walk": WALK_JS})  # fmt: skip
    engine = ModelEngine(model)
    found = run_device(engine, model, "attack.0", model.methods["Walk"]).result
    standard = json.loads(
        quickjs.Context().eval("JSON.stringify(Reflect.ownKeys(globalThis).map(String))")
    )
    assert sorted(found["globals"]) == sorted(standard)
    assert not [name for name in found["globals"] if "cirque" in name.lower()]
    assert {"Math", "Date", "JSON", "Object", "Array", "Promise"} <= set(found["globals"])
    assert found["scope"] == ["function"] * 4
    assert found["onGlobal"] == []


def test_a_script_that_closes_its_own_function_is_refused(tmp_path):
    """Code after a stray brace would run at the global level, where a let outlives
    every call and would be shared by every device."""
    escapes = '"use strict";\nfunction main() {}\n}); let shared = {}; (function () {\n'
    model = attack_model(tmp_path, escapes)
    (problem,) = check_scripts(model)
    assert str(problem) == (
        f"{tmp_path / 'attack.js'}:1: model attack: the script closes the function it is "
        "compiled in (a stray closing brace); balance its braces"
    )
    with pytest.raises(ScriptError, match="stray closing brace"):
        ModelEngine(model)


def test_a_long_result_comes_back_whole(tmp_path):
    long_js = '"use strict";\nfunction main() { log("x".repeat(5000)); return "y".repeat(5000); }\n'
    model = attack_model(tmp_path, long_js, {"Long": long_js})
    engine = ModelEngine(model)
    step = run_device(engine, model, "attack.1", model.methods["Long"])
    assert step.updates == [("log", "x" * 5000)]
    assert step.result == "y" * 5000
