/*global log, updateState*/
"use strict";

// Heats towards the target while below it, drifts down while above it (rates from Params).
function main(context, previousState, previousProperties, params) {
    var temperature = previousState.temperature;
    var heating = temperature < previousState.target - 0.2;
    if (heating) {
        temperature += params.heatingRate * (0.5 + Math.random());
    } else {
        temperature -= params.coolingRate * Math.random();
    }
    updateState({ temperature: Math.round(temperature * 100) / 100, heating: heating });
}
