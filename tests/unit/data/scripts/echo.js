"use strict";
// Hands back what it was given, so tests can look at the context, state, properties and params.
function main(context, previousState, previousProperties, params) {
    log("echo for " + context.deviceId);
    return { context: context, state: previousState, properties: previousProperties,
             params: params === undefined ? "undefined" : params };
}
