/*global log, updateState, updateProperty*/
"use strict";

// An unlocked door opens and shuts now and then; a locked one stays shut.
// The battery drains a little each tick, and the lock reports when it runs low.
function main(context, previousState, previousProperties) {
    var state = { battery: Math.max(0, previousState.battery - 0.01) };
    if (!previousState.locked && Math.random() < 0.2) {
        state.door_open = !previousState.door_open;
        state.last_event = state.door_open ? "opened" : "closed";
    }
    if (state.battery < 20 && previousProperties.BatteryLow !== true) {
        updateProperty("BatteryLow", true);
    }
    updateState(state);
}
