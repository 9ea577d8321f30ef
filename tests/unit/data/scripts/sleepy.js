"use strict";
// Sleeps from a nested function inside a loop, with random numbers and the clock in play,
// so a replay that took another path would show.
function stage(name, ms) {
    updateProperty("Stage", name);
    sleep(ms);
}
function main(context, previousState, previousProperties) {
    var started = Date.now();
    var draws = [];
    var stages = ["download", "apply", "reboot"];
    for (var i = 0; i < stages.length; i++) {
        draws.push(Math.random());
        stage(stages[i], Number(context.StepMilliseconds) || 100);
    }
    updateState({ stages_done: stages.length });
    return { draws: draws, elapsed: Date.now() - started };
}
