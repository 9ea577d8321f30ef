/*global log, updateState*/
"use strict";

function main(context, previousState, previousProperties) {
    log("pressure rising");
    updateState({ simulation_state: "high_pressure", pressure: 250 });
}
