/*global log, updateState*/
"use strict";

function main(context, previousState, previousProperties) {
    updateState({ locked: false, last_event: "unlocked" });
    return { locked: false };
}
