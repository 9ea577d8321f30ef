/*global log, updateState*/
"use strict";

function main(context, previousState, previousProperties) {
    log("starting from floor " + previousState.floor);
    updateState({ moving: true });
    return { floor: previousState.floor };
}
