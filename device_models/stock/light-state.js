/*global updateState*/
"use strict";

// Power follows brightness while the light is on, with a little noise; zero when off.
function main(context, previousState, previousProperties, params) {
    var power = 0.0;
    if (previousState.on) {
        power = params.ratedPower * (previousState.brightness / 100) * (0.97 + 0.06 * Math.random());
    }
    updateState({ power: Math.round(power * 1000) / 1000 });
}
