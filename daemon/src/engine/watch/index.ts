// watch/: WatchRun streams, fed by one event hub per replica.
// Code outside this folder imports only this file (checked by pnpm check:imports).
export { EventHub } from "./event-hub.js";
export { Watches } from "./watch.js";
