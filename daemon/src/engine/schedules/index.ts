// schedules/: schedules (cron expressions and intervals) that start runs: their specs and clocks, the
// store, the fire steps, and the firing loop every replica runs.
// Code outside this folder imports only this file (checked by pnpm check:imports).
export { ClockCache } from "./clock-cache.js";
export { CLAIM_LEASE_MS, FiringLoop } from "./firing-loop.js";
export { fireKey, ScheduleFires, type ScheduleStats } from "./schedule-fires.js";
export { MAX_BACKFILL, ScheduleOps } from "./schedule-ops.js";
export { ScheduleStore } from "./schedule-store.js";
