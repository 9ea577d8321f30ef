/*global log, updateState*/
"use strict";

// Payload: {"Target": 22.5} (degrees, between 5 and 30).
function main(context, previousState, previousProperties) {
    var target = Number(context.Target);
    if (!(target >= 5 && target <= 30)) {
        throw new RangeError("SetTarget needs {\"Target\": <5..30>}, got " + context.Target);
    }
    updateState({ target: target });
    log("target set to " + target);
    return { target: target, previous: previousState.target };
}
