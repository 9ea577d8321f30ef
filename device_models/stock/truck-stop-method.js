/*global log, updateState*/
"use strict";

function main(context, previousState, previousProperties) {
    updateState({ driving: false, speed: 0.0 });
    return { latitude: previousState.latitude, longitude: previousState.longitude };
}
