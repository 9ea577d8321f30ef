"use strict";
// Catches everything, sleep included: what follows a sleep must still wait for it.
function main(context, previousState, previousProperties) {
    updateProperty("Stage", "before");
    try {
        sleep(50);
    } catch (e) {
        updateProperty("Caught", String(e));
    }
    updateProperty("Stage", "after");
}
