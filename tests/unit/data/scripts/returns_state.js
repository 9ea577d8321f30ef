"use strict";
// The older style of state script: main returns the new state instead of calling updateState.
function main(context, previousState, previousProperties) {
    previousState.count = previousState.count + 1;
    return previousState;
}
