"""The script engine: a model's JavaScript run in a sandboxed QuickJS context.

One context per model, shared by all of that model's devices. A QuickJS context costs
about 70 KiB before any script is loaded, so one per device would cost 1.4 GiB for
20,000 devices; one per model costs nothing per device. Devices are still isolated
from each other:

- each call runs the script's top level afresh (it is compiled once, wrapped in a
  factory function), so its variables, ``state`` included, start clean every call,
  as they did in the seed's service, which ran a fresh interpreter per call;
- everything a script can reach that outlives its call is deep-frozen once, when the
  engine starts: the global object and every built-in (constructors, prototypes, their
  symbol-keyed members, getters and setters, and the intrinsics only instances lead to,
  such as the array iterator's prototype), the script's ``Math`` and ``Date`` (made once,
  they read the running call's seed and clock) and ``log``, ``updateState``,
  ``updateProperty`` and ``sleep``; so every call sees pristine built-ins and has nowhere
  to leave anything for the next. Freezing once costs a few milliseconds per model and
  nothing per call, where re-creating the built-ins would cost every call;
- ``Error.prepareStackTrace`` and ``Error.stackTraceLimit`` are accessors whose setters
  would change how every later error is written (and so the next device's file:line);
  they become read-only values;
- the engine's own objects (the script table, the call function, the host functions'
  shared record) live in the harness's closure: no global name leads to them, and the
  Python side holds the one function the harness returns;
- a refused write throws a TypeError in strict code (the seed's scripts start with
  ``"use strict"``) and is reported like any other script error, with file:line and
  device; scripts that are not strict keep sloppy-mode semantics (the write does
  nothing, silently), rather than being made strict, which would change what some valid
  scripts mean (``this`` in plain calls, ``arguments``, octal literals, ``with``);
- a script is compiled as one function expression; one whose text closes that function
  (and would run code at the global level, where a ``let`` would outlive every call) is
  refused. The sandbox has no I/O at all.

Limits hold per call (defaults in ``ScriptLimits``: 8 MiB of memory on top of what the
model's compiled scripts use, 100 ms of CPU, 256 KiB of stack). An infinite loop or a
memory bomb fails that one call with a ScriptError naming file:line, device and cause;
the context stays usable for every other device.

The binding is quickjs-ng's (the ``quickjs-ng`` package, imported as ``quickjs``): the
released ``quickjs`` package (QuickJS 2021-03-27) crashes the process when a script
reaches its memory limit (bellard/quickjs#533), which quickjs-ng fixed;
``engine_report`` tells which binding was loaded and whether it has that fix.

Host functions live on the JavaScript side: the binding refuses to call into
Python while a time limit is set, so ``log``, ``updateState`` and ``updateProperty``
record what they are asked to do, and the call hands the list back once, as JSON.

``sleep(ms)`` in method scripts cannot block: one thread serves every device. A call
that reaches ``sleep`` stops there and reports how long to sleep; after sleeping (in
asyncio, so other devices go on) the simulator calls again with ``resume`` raised by
one. The script is replayed from the top with the same inputs, the same random numbers
(``Math.random`` is seeded per method call) and the same clock (``Date`` reads the call's
start time plus the sleeps so far), so it takes the same path; the first ``resume``
sleeps return at once, and updates already applied (``skip``) are not handed back again.
Replaying costs a little CPU per sleep, and in exchange any script works, with sleeps in
nested functions and loops, without rewriting its source.

An engine belongs to the thread that built it: a QuickJS runtime is not thread-safe, and
its maintainers saw crashes when different threads touch one runtime even at different
times. So ``run`` and ``close`` refuse any other thread, and the owner calls ``close`` so
the context is also freed there, not wherever the garbage collector happens to run.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import quickjs

from pytest_cirque.core.errors import CirqueError, ScriptError
from pytest_cirque.device_models.model import DeviceModel, ScriptRef

#: The binding pyproject.toml depends on: every build of quickjs-ng tried survived 100
#: memory bombs in a row, where the quickjs package crashed after 28 and quickjs-py after
#: 8 (benchmarks/results/script_engines.json).
BINDING = "quickjs-ng"
#: Distributions that install the ``quickjs`` module (they overwrite each other's files);
#: the first three are builds of quickjs-ng, which does not crash out of memory.
_BINDINGS = (BINDING, "python-quickjs-ng", "edwh-quickjs-ng", "quickjs-py", "quickjs")
_NG_BUILDS = _BINDINGS[:3]


_EXTENSION = Path(quickjs._quickjs.__file__)  # the C extension this process loaded


def _loaded_binding() -> tuple[str, str]:
    """(distribution, version) whose extension module this process loaded."""
    loaded = _EXTENSION.resolve()
    for name in _BINDINGS:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        for file in dist.files or ():
            if (
                file.name.startswith("_quickjs")
                and Path(str(dist.locate_file(file))).resolve() == loaded
            ):
                return name, dist.version
    return "unknown binding", loaded.name


QUICKJS_BINDING, QUICKJS_VERSION = _loaded_binding()
# A local build patched for the crash (older checkouts made one) is tagged "+cirque".
QUICKJS_HAS_OOM_FIX = QUICKJS_BINDING in _NG_BUILDS or "+cirque" in QUICKJS_VERSION
_REINSTALL = (
    f"pip uninstall -y {QUICKJS_BINDING} && " if QUICKJS_BINDING in _BINDINGS else ""
) + f"pip install --force-reinstall {BINDING}"


def engine_report() -> tuple[bool, str, str]:
    """(crash fixed, what was loaded, what it means): the script engine's doctor line."""
    what = f"{QUICKJS_BINDING} {QUICKJS_VERSION} ({_EXTENSION.name})"
    if QUICKJS_HAS_OOM_FIX:
        return True, f"{what}, memory-limit crash fixed", "a memory bomb fails that call only"
    return (
        False,
        f"{what}, memory-limit crash NOT fixed (bellard/quickjs#533)",
        f"a script reaching its memory limit can crash the whole run; run: {_REINSTALL}",
    )


if not QUICKJS_HAS_OOM_FIX:  # e.g. the old quickjs package's extension shadows ours
    warnings.warn(
        f"{engine_report()[1]}: a script reaching its memory limit can crash the process; "
        f"run: {_REINSTALL}",
        RuntimeWarning,
        stacklevel=1,  # point at the engine, not at whoever imported it
    )


@dataclass(frozen=True)
class ScriptLimits:
    """Per-call limits of device scripts."""

    memory_bytes: int = 8 * 1024 * 1024  # above what the model's compiled scripts use
    time_seconds: float = 0.1  # CPU time (the C clock()), per call
    stack_bytes: int = 256 * 1024


@dataclass
class Step:
    """What one call of a script did: new updates, a sleep to take, or its result."""

    updates: list[tuple]  # ("log", text) | ("state", dict) | ("property", key, value)
    sleep_ms: float | None  # the script stopped at sleep(ms); call again with resume + 1
    result: Any  # what main returned (None when it returned nothing)


_HARNESS = r"""
(function () {
  "use strict";
  // Everything here lives in this closure: the engine keeps the one function this
  // expression returns, so no global name leads a script to the engine's own objects
  // (a name, even read-only, would still hand a script the function that resets the
  // running call, and a table a script could write would swap every device's script).
  // One call runs at a time, so the host functions, Math and Date below are made once
  // and read the running call's record; they are deep-frozen with the built-ins.
  var RealDate = Date, RealMath = Math, parse = JSON.parse, stringify = JSON.stringify;
  var freeze = Object.freeze, ownKeys = Reflect.ownKeys, describe = Object.getOwnPropertyDescriptor;
  var protoOf = Object.getPrototypeOf, source = Function.prototype.toString;
  var scripts = Object.create(null);  // script file -> its compiled factory
  var call = null;  // the running call: {a: input, updates: [JSON texts], now, seed, ...}
  function random() {  // mulberry32, seeded per call: small, fast, repeatable
    var a = call.seed = (call.seed + 0x6D2B79F5) >>> 0;
    var t = RealMath.imul(a ^ (a >>> 15), a | 1);
    t ^= t + RealMath.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  var math = Object.create(RealMath);
  Object.defineProperty(math, "random", { value: random });
  function FixedDate() {
    if (!(this instanceof FixedDate)) { return new RealDate(call.now).toString(); }
    if (arguments.length === 0) { return new RealDate(call.now); }
    var args = [null];
    for (var i = 0; i < arguments.length; i++) { args.push(arguments[i]); }
    return new (Function.prototype.bind.apply(RealDate, args))();
  }
  FixedDate.now = function () { return call.now; };
  FixedDate.UTC = RealDate.UTC;
  FixedDate.parse = RealDate.parse;
  FixedDate.prototype = RealDate.prototype;
  function __cirque_log(message) {
    call.updates.push(stringify(["log", String(message)]));
  }
  function __cirque_updateState(state) {
    if (state === null || typeof state !== "object" || Array.isArray(state)) {
      throw new TypeError("updateState expects an object of state keys");
    }
    call.updates.push(stringify(["state", state]));
  }
  function __cirque_updateProperty(key, value) {
    call.updates.push(stringify(["property", String(key), value === undefined ? null : value]));
  }
  function __cirque_sleep(ms) {
    if (!call.a.method) { throw new Error("sleep() is only available in method scripts"); }
    ms = Number(ms) || 0;
    if (call.pendingSleep === null) {
      if (call.sleepsDone < call.a.resume) { call.sleepsDone++; call.now += ms; return; }
      call.pendingSleep = ms;
      call.updatesAtSleep = call.updates.length;  // a script that catches this goes on,
    }                                             // but what it does after is not kept
    throw new Error("sleeping");  // unwinds to __cirque_call, which reports the sleep
  }
  function __cirque_ignore() {}
  function __cirque_call(key, input) {
    var a = parse(input);
    call = { a: a, updates: [], now: a.startMs, seed: a.seed >>> 0, sleepsDone: 0,
             pendingSleep: null, updatesAtSleep: 0 };
    var main = scripts[key](__cirque_log, __cirque_updateState,
        __cirque_updateProperty, __cirque_sleep, math, FixedDate);
    var result = null;
    try {
      result = main(a.context, a.state, a.properties, a.params);
    } catch (e) {
      if (call.pendingSleep === null) { throw e; }
    }
    var sleep = call.pendingSleep;
    var end = sleep === null ? call.updates.length : call.updatesAtSleep;
    // join, not +: a long + makes a rope string, which the binding cannot hand back
    return ['{"updates":[', call.updates.slice(a.skip, end).join(","), '],"sleep":',
        stringify(sleep), ',"result":',
        sleep === null && result !== undefined ? stringify(result) || "null" : "null",
        "}"].join("");
  }
  // Keeps a compiled script: "escapes" when its text closed the function it is wrapped in
  // (the function got back is not the one written around it), "no main" when its top
  // level defines no main, else "ok". The factory is frozen: every device calls it.
  function __cirque_register(key, factory, text) {
    if (typeof factory !== "function" || source.call(factory) !== text) { return "escapes"; }
    deepFreeze([factory]);
    scripts[key] = factory;
    var main = factory(__cirque_ignore, __cirque_ignore, __cirque_ignore, __cirque_ignore,
        math, FixedDate);
    return typeof main === "function" ? "ok" : "no main";
  }
  // Freezes everything reachable from roots: own properties (symbol-keyed too), getters
  // and setters (functions, so objects a script could write), and prototypes.
  function deepFreeze(roots) {
    var seen = new Set(), todo = roots.slice();
    while (todo.length > 0) {
      var value = todo.pop();
      if (value === null || (typeof value !== "object" && typeof value !== "function") ||
          seen.has(value)) { continue; }
      seen.add(value);
      freeze(value);
      var keys = ownKeys(value);
      for (var i = 0; i < keys.length; i++) {
        var d = describe(value, keys[i]);
        if (d === undefined) { continue; }
        if ("value" in d) { todo.push(d.value); } else { todo.push(d.get, d.set); }
      }
      todo.push(protoOf(value));
    }
  }
  // Error.prepareStackTrace and Error.stackTraceLimit are accessors whose setters change
  // the whole context (how every later error's stack is written, hence the file:line of
  // the next device's error); read-only data properties with their defaults instead.
  ["prepareStackTrace", "stackTraceLimit"].forEach(function (name) {
    var d = describe(Error, name);
    if (d && d.get) {
      Object.defineProperty(Error, name, { value: d.get.call(Error), writable: false,
                                           enumerable: false, configurable: false });
    }
  });
  // Intrinsics no global names, reached through instances a script can make.
  function* generator() {}
  async function asyncFunction() {}
  async function* asyncGenerator() {}
  var hidden = [
    [][Symbol.iterator](), ""[Symbol.iterator](), new Map().entries(), new Set().values(),
    "".matchAll(/(?:)/g), generator, generator(), asyncFunction, asyncGenerator,
    asyncGenerator(), describe(Function.prototype, "caller"),
    (function () { return arguments; })()
  ];
  if (typeof Iterator === "function" && typeof Iterator.from === "function") {
    hidden.push(Iterator.from({ next: function () { return { done: true }; } }));
    hidden.push([].values().map(function (x) { return x; }));
  }
  deepFreeze([globalThis, math, FixedDate, __cirque_log, __cirque_updateState,
      __cirque_updateProperty, __cirque_sleep, __cirque_ignore].concat(hidden));
  return function (name) { return name === "call" ? __cirque_call : __cirque_register; };
})()
"""

# A script is compiled as one function expression (the Python side keeps what it
# evaluates to, so it needs no global name either); run, it returns the script's main.
_FACTORY_HEAD = "(function __cirque_factory(log, updateState, updateProperty, sleep, Math, Date) {"
_FACTORY_TAIL = '\n;return typeof main === "function" ? main : undefined;\n})'

_REBASE_EVERY_CALLS = 500
_OUT_OF_MEMORY = ("null", "InternalError: out of memory")
# What QuickJS says when a strict-mode write to a frozen object is refused.
_REFUSED_WRITE = re.compile(
    r"TypeError: (object is not extensible|'[^']*' is read-only|could not delete property"
    r"|cannot define variable '[^']*'|Cannot assign to read only property.*)"
)
_FROZEN_HINT = (
    "; built-ins, Math, Date and the global object are frozen (devices share them): "
    "keep values in variables of the script's own"
)

# "at main (<input>:12:5)", "at spin (<input>)", for syntax errors "at <input>:3:6";
# the column is optional (older QuickJS builds give none).
_FRAME = re.compile(r"^\s*at (?:(\S+) \()?<input>(?::(\d+))?(?::\d+)?\)?\s*$")


def _first_user_frame(stack: str) -> tuple[str | None, int | None]:
    """The innermost frame in the device's script: (function name, line or None)."""
    for line in stack.splitlines():
        match = _FRAME.match(line)
        if not match:
            continue
        name, number = match.group(1) or "__cirque_factory", match.group(2)
        if name.startswith("__cirque_") and name != "__cirque_factory":
            continue
        return name, int(number) if number else None
    return None, None


def _definition_line(source: str, function: str | None) -> int:
    """The line where ``function`` is declared (for errors that carry no line), else 1."""
    names = [function] if function and function != "__cirque_factory" else []
    for name in [*names, "main"]:
        match = re.search(rf"\bfunction\s+{re.escape(name)}\s*\(", source)
        if match:
            return source.count("\n", 0, match.start()) + 1
    return 1


class ModelEngine:
    """The compiled JavaScript of one device model, ready to run for any of its devices."""

    def __init__(
        self, model: DeviceModel, limits: ScriptLimits | None = None, *, raise_first: bool = True
    ) -> None:
        """Compile every script of the model; raise the first problem unless told not to.

        With ``raise_first=False`` the problems are kept in ``problems`` instead.
        """
        self.model = model
        self.limits = limits or ScriptLimits()
        self.owner = threading.current_thread()  # the one thread that may touch the context
        self._context = quickjs.Context()
        self._context.set_max_stack_size(self.limits.stack_bytes)
        entry = self._context.eval(_HARNESS)  # the harness's one way in, held here only
        self._call = entry("call")
        self._register = entry("register")
        self._context.set_time_limit(self.limits.time_seconds)
        self._rebase_memory_limit()  # a script's top level runs under the limits too
        self._sources: dict[str, str] = {}
        self.problems = [error for ref in model.javascript() if (error := self._compile(ref))]
        if self.problems and raise_first:
            self.close()  # here, not on whichever thread drops the traceback
            raise self.problems[0]
        self._calls_until_rebase = 0  # measure again once the scripts are in

    def _rebase_memory_limit(self) -> None:
        """Allow ``memory_bytes`` above what the context holds between calls.

        Measuring the context walks its whole heap (tens of microseconds), so this runs
        after a failed call and every few hundred calls, not before each call; garbage of
        a call is freed as it goes (reference counting), so the base moves little. No
        explicit collection first: the binding's ``gc()`` runs a full Python collection
        as well (milliseconds in a large simulation), and the few cycles a call leaves
        are QuickJS's own collector's to free (counted in the base until then).
        """
        self._context.set_memory_limit(-1)
        used = self._context.memory()["memory_used_size"]
        self._context.set_memory_limit(used + self.limits.memory_bytes)
        self._calls_until_rebase = _REBASE_EVERY_CALLS

    def _compile(self, ref: ScriptRef) -> ScriptError | None:
        key = str(ref.file)
        if key in self._sources:
            return None
        try:
            source = Path(key).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            return ScriptError(f"{key}:1: model {self.model.id}: cannot read script ({exc})")
        wrapped = _FACTORY_HEAD + source + _FACTORY_TAIL
        try:
            factory = self._context.eval(wrapped)
        except quickjs.JSException as exc:
            message = str(exc)
            _, line = _first_user_frame(message)
            return ScriptError(
                f"{key}:{line or 1}: model {self.model.id}: "
                f"{message.splitlines()[0]}; fix the script"
            )
        self._sources[key] = source
        try:
            verdict = self._register(key, factory, wrapped[1:-1])
        except quickjs.JSException as exc:
            return self._error(ref, f"model {self.model.id}", "error at the top level", exc)
        if verdict == "escapes":
            return ScriptError(
                f"{key}:1: model {self.model.id}: the script closes the function it is "
                "compiled in (a stray closing brace); balance its braces"
            )
        if verdict != "ok":
            return ScriptError(
                f"{key}:1: model {self.model.id}: no function main(context, previousState, "
                "previousProperties) defined; define it"
            )
        return None

    def run(
        self,
        ref: ScriptRef,
        *,
        device_id: str,
        context: Mapping[str, Any],
        state: Mapping[str, Any],
        properties: Mapping[str, Any],
        method: bool = False,
        resume: int = 0,
        skip: int = 0,
        seed: int = 0,
        start_ms: float = 0.0,
    ) -> Step:
        """Call the script's main for one device; raise ScriptError when the call fails."""
        self._check_owner("run a script")
        key = str(ref.file)
        call_input = json.dumps(
            {
                "context": context,
                "state": state,
                "properties": properties,
                "params": ref.params,
                "method": method,
                "resume": resume,
                "skip": skip,
                "seed": seed,
                "startMs": start_ms,
            }
        )
        self._calls_until_rebase -= 1
        if self._calls_until_rebase <= 0:
            self._rebase_memory_limit()
        try:
            output = self._call(key, call_input)
        except quickjs.StackOverflow as exc:
            raise self._error(ref, f"device {device_id}", "stack overflow", exc) from None
        except quickjs.JSException as exc:
            raise self._error(ref, f"device {device_id}", "exception in main", exc) from None
        reply = json.loads(output)
        return Step(
            updates=[tuple(update) for update in reply["updates"]],
            sleep_ms=reply["sleep"],
            result=reply["result"],
        )

    def close(self) -> None:
        """Free the QuickJS context now, on the owning thread (safe to call twice)."""
        if self._context is None:
            return
        self._check_owner("close")
        self._call = self._register = self._context = None

    @property
    def closed(self) -> bool:
        return self._context is None

    def _check_owner(self, what: str) -> None:
        """Refuse other threads: a QuickJS runtime touched by two threads may crash."""
        if threading.current_thread() is not self.owner:
            raise CirqueError(
                f"model {self.model.id}: cannot {what} from thread "
                f"{threading.current_thread().name}; a script engine is used only on the "
                "thread that built it (the simulation's loop thread)"
            )
        if self._context is None:
            raise CirqueError(f"model {self.model.id}: the script engine is closed")

    def _error(self, ref: ScriptRef, who: str, what: str, exc: Exception) -> ScriptError:
        """One line naming script file:line, who ran it and the cause."""
        self._calls_until_rebase = 0  # a failed call may have left garbage: measure again
        message = str(exc)
        first = message.splitlines()[0] if message.strip() else "null"
        function, line = _first_user_frame(message)
        source = self._sources.get(str(ref.file), "")
        # Out of memory, QuickJS may have no memory left to describe the error either.
        if first in _OUT_OF_MEMORY or first.startswith("(Failed obtaining QuickJS error"):
            cause = (
                f"memory limit of {self.limits.memory_bytes // (1024 * 1024)} MiB exceeded "
                "(ScriptLimits.memory_bytes); the script allocates without bound"
            )
        elif first == "InternalError: interrupted":
            cause = (
                f"time limit of {self.limits.time_seconds * 1000:g} ms exceeded "
                "(ScriptLimits.time_seconds); look for an endless loop"
            )
        elif what == "stack overflow":
            cause = "stack overflow; look for endless recursion"
        else:
            cause = f"{what}: {first}"
        where = f" in {function}" if function and function != "__cirque_factory" else ""
        hint = _FROZEN_HINT if _REFUSED_WRITE.fullmatch(first) else ""
        line = line or _definition_line(source, function)
        return ScriptError(f"{ref.file}:{line}: {who}: {cause}{where}{hint}")


def check_scripts(model: DeviceModel, limits: ScriptLimits | None = None) -> list[ScriptError]:
    """Every script problem of a model (syntax errors, no main, failing top level)."""
    engine = ModelEngine(model, limits, raise_first=False)
    engine.close()
    return engine.problems
