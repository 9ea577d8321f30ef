"use strict";
function mian(context, previousState, previousProperties) {
    updateState({});
}
