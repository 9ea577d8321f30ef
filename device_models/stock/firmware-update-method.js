/*global log, updateState, updateProperty, sleep*/
"use strict";

// Firmware update, shared by the stock models: download, apply (device offline), reboot.
// Payload: {"Firmware": "2.0"}; optional "StepMilliseconds" shortens each stage (tests).
function main(context, previousState, previousProperties) {
    var version = context.Firmware;
    var step = Number(context.StepMilliseconds) || 5000;
    if (typeof version !== "string" || version === "") {
        throw new Error("FirmwareUpdate needs {\"Firmware\": \"<version>\"} in its payload");
    }
    log("firmware update from " + previousProperties.Firmware + " to " + version);
    updateProperty("FirmwareUpdateStatus", "Downloading");
    sleep(step);
    updateProperty("FirmwareUpdateStatus", "Applying");
    updateState({ online: false });
    sleep(step);
    updateProperty("FirmwareUpdateStatus", "Rebooting");
    sleep(step);
    updateProperty("Firmware", version);
    updateProperty("FirmwareUpdateStatus", "Completed");
    updateState({ online: true });
    return { Firmware: version };
}
