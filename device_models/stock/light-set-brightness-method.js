/*global updateState*/
"use strict";

// Payload: {"Brightness": 0..100} (percent, whole numbers).
function main(context, previousState, previousProperties) {
    var brightness = Number(context.Brightness);
    if (!(brightness >= 0 && brightness <= 100) || Math.floor(brightness) !== brightness) {
        throw new RangeError("SetBrightness needs {\"Brightness\": <0..100>}, got " + context.Brightness);
    }
    updateState({ brightness: brightness });
    return { brightness: brightness };
}
