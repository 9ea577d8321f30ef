"use strict";
function main(context, previousState, previousProperties) {
    var broken = {;
    updateState(broken);
}
