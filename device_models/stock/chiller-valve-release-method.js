/*global log, updateState*/
"use strict";

function main(context, previousState, previousProperties) {
    log("emergency valve released at " + previousState.pressure + " psig");
    updateState({ simulation_state: "normal_pressure", pressure: 150 });
    return { released: true };
}
