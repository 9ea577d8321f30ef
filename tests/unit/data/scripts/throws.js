"use strict";
function main(context, previousState, previousProperties) {
    log("about to fail");
    if (context.deviceId.slice(-2) === ".0" || context.always) {
        throw new Error("sensor unplugged");
    }
    updateState({ count: previousState.count + 1 });
}
