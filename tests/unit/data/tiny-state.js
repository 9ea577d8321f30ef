"use strict";
function main(context, previousState, previousProperties) {
    updateState({ count: previousState.count + 1 });
}
