/*global log, updateState*/
"use strict";

function main(context, previousState, previousProperties) {
    log("driving off from " + previousState.latitude + "," + previousState.longitude);
    updateState({ driving: true });
}
