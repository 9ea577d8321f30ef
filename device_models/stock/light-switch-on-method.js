/*global updateState*/
"use strict";

function main(context, previousState, previousProperties) {
    updateState({ on: true });
    return { on: true, brightness: previousState.brightness };
}
