"use strict";
function main(context, previousState, previousProperties) {
    sleep(10);
}
