/*global log, updateState*/
"use strict";

// Temperature and humidity wander around their averages; pressure does too, around a higher
// average while the chiller is in the "high_pressure" state (until its valve is released).
function around(average, percent, min, max) {
    var value = average * (1 + (percent / 100) * (2 * Math.random() - 1));
    return Math.min(Math.max(value, min), max);
}

function main(context, previousState, previousProperties) {
    var high = previousState.simulation_state === "high_pressure";
    updateState({
        temperature: around(75, 1, 25, 100),
        humidity: around(70, 1, 2, 99),
        pressure: high ? around(250, 25, 50, 300) : around(150, 10, 50, 300)
    });
}
