// watch/: WatchRun streams, fed by one event hub per replica, and WatchRuns streams (many runs and
// workflows on one stream), fed by the same hub and by the runs' finish announcements.
// Code outside this folder imports only this file (checked by pnpm check:imports).
export { EventHub } from "./event-hub.js";
export { FinishHub } from "./finish-hub.js";
export type { RunsWatch, RunsWatchLimits } from "./runs-watch.js";
export { Watches } from "./watch.js";
