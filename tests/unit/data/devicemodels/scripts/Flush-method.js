/*global updateState, updateProperty*/
"use strict";

// Flushing restarts the cycle count.
function main(context, previousState, previousProperties) {
    updateState({ cycles: 0 });
    updateProperty("LastFlush", context.currentTime);
    return { flushed: true };
}
