"use strict";
function main(context, previousState, previousProperties) {
    updateState({ a: 1 });
    updateProperty("Colour", "red");
    updateState({ b: 2 });
    log("done");
}
