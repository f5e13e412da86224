// WatchRun streams, fed by one event hub per replica.
// What this folder offers the rest of the engine, which imports it only through this file.
export { EventHub } from "./event-hub.js";
export { Watches } from "./watch.js";
