// dispatch/: the BullMQ side: task queues, the dispatchers that hand their jobs to polls, queue and
// key limits, durable timers.
// Code outside this folder imports only this file (checked by pnpm check:imports).
export type { DispatchStats, PendingOffer, QueueDispatcher } from "./dispatcher.js";
export { Dispatchers } from "./dispatchers.js";
export type { FetchedJob, TaskJobSpec } from "./jobs.js";
export { KeyLimiter } from "./key-limiter.js";
export { QueueAdmin } from "./queue-admin.js";
export { LOCK_GRACE_MS, QUEUE_EVENTS_KEPT, TaskQueues } from "./task-queues.js";
export { type TimerData, Timers } from "./timers.js";
