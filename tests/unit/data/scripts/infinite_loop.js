"use strict";
function spin() {
    for (;;) {
        // waits for nothing, forever
    }
}
function main(context, previousState, previousProperties) {
    if (context.deviceId.slice(-2) === ".0" || context.always) {
        spin();
    }
    updateState({ count: previousState.count + 1 });
}
