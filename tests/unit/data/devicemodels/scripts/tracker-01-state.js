/*global updateState*/
"use strict";

// The tracker drifts north-east at a whole number of km/h.
function main(context, previousState, previousProperties) {
    updateState({
        latitude: previousState.latitude + 0.001,
        longitude: previousState.longitude + 0.001,
        speed: 20 + Math.floor(Math.random() * 10)
    });
}
