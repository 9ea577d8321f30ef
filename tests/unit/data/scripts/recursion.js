"use strict";
function deeper(n) {
    return deeper(n + 1) + 1;
}
function main(context, previousState, previousProperties) {
    return deeper(0);
}
