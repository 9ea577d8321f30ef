"use strict";
function main(context, previousState, previousProperties) {
    updateState([1, 2, 3]);
}
