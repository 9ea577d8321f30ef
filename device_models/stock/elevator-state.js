/*global log, updateState*/
"use strict";

// A moving car goes one floor up or down per tick and vibrates; the motor warms while it moves.
function around(average, percent, min, max) {
    var value = average * (1 + (percent / 100) * (2 * Math.random() - 1));
    return Math.min(Math.max(value, min), max);
}

function nextFloor(floor, top) {
    if (floor <= 1) {
        return 2;
    }
    if (floor >= top) {
        return top - 1;
    }
    return Math.random() < 0.5 ? floor - 1 : floor + 1;
}

function main(context, previousState, previousProperties) {
    var state = previousState;
    if (state.moving) {
        state.floor = nextFloor(state.floor, state.floors);
        state.vibration = around(10, 5, 0, 20);
        state.temperature = around(78, 2, 25, 110);
    } else {
        state.vibration = 0;
        state.temperature = around(70, 1, 25, 110);
    }
    updateState(state);
}
