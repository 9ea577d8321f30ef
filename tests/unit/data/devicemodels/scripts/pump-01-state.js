/*global updateState*/
"use strict";

// One pump cycle per run; the flow wanders around the model's NominalFlow.
function main(context, previousState, previousProperties, params) {
    var nominal = Number(params.NominalFlow) || 10;
    updateState({
        cycles: previousState.cycles + 1,
        flow: nominal * (0.9 + 0.2 * Math.random())
    });
}
