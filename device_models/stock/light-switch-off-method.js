/*global updateState*/
"use strict";

function main(context, previousState, previousProperties) {
    updateState({ on: false, power: 0.0 });
    return { on: false };
}
