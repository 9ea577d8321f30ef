/*global log, updateState*/
"use strict";

function main(context, previousState, previousProperties) {
    log("stopping at floor " + previousState.floor);
    updateState({ moving: false, vibration: 0 });
    return { floor: previousState.floor };
}
