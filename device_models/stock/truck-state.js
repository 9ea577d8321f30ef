/*global log, updateState*/
"use strict";

// While driving, the truck moves a little along a random heading at about 50 mph;
// the cargo stays cold, with small swings.
function around(average, percent, min, max) {
    var value = average * (1 + (percent / 100) * (2 * Math.random() - 1));
    return Math.min(Math.max(value, min), max);
}

function main(context, previousState, previousProperties) {
    var state = previousState;
    if (state.driving) {
        var heading = Math.random() * 2 * Math.PI;
        state.speed = around(50, 10, 0, 80);
        state.latitude += 0.0005 * Math.cos(heading);
        state.longitude += 0.0005 * Math.sin(heading);
    } else {
        state.speed = 0.0;
    }
    state.cargotemperature = around(38, 2, 30, 50);
    updateState(state);
}
