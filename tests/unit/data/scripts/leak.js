"use strict";
// Tries every way to leave something behind for the next call (another device).
var calls = 0;
function main(context, previousState, previousProperties) {
    calls += 1;
    var found = {
        calls: calls,
        global: typeof globalThis.leaked,
        proto: typeof [].leaked
    };
    try { globalThis.leaked = 1; } catch (e) { found.globalError = e.name; }
    try { Array.prototype.leaked = 1; } catch (e) { found.protoError = e.name; }
    try { Math.random = function () { return 0; }; } catch (e) { found.mathError = e.name; }
    return found;
}
