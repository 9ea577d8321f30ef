// The seed's example model names "TBD.js" for both of its methods; this stands in for it.
"use strict";
function main(context, previousState, previousProperties) {
    log("method called on " + context.deviceId);
    updateState({ moving: !previousState.moving });
}
