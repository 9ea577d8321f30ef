"use strict";
function main(context, previousState, previousProperties) {
    var hoard = [];
    for (;;) {
        hoard.push(new Array(1024).fill("x".repeat(64)));
    }
}
