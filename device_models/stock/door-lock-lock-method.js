/*global log, updateState*/
"use strict";

// A lock cannot bolt an open door: it answers with locked false and says why.
function main(context, previousState, previousProperties) {
    if (previousState.door_open) {
        log("cannot lock: the door is open");
        return { locked: false, reason: "door open" };
    }
    updateState({ locked: true, last_event: "locked" });
    return { locked: true };
}
