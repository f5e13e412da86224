// leases/: the worker protocol: tasks handed to polls under leases, heartbeats, completions,
// failures, lease expiry.
// Code outside this folder imports only this file (checked by pnpm check:imports).
export { type AnnouncedOffer, LeaseOps } from "./lease-ops.js";
