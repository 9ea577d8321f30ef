/*global log, updateState, updateProperty, sleep*/
"use strict";

// Reboot, shared by the stock models: offline for a while, then back.
// Optional payload "StepMilliseconds" sets how long the device stays offline.
function main(context, previousState, previousProperties) {
    var offline = Number(context.StepMilliseconds) || 10000;
    updateProperty("DeviceMethodStatus", "Rebooting");
    updateState({ online: false });
    sleep(offline);
    updateState({ online: true });
    updateProperty("DeviceMethodStatus", "Successfully rebooted");
    log("rebooted after " + offline + " ms");
}
