// The worker protocol: handing tasks to polls under leases, heartbeats, completions, failures and lease expiry.
// What this folder offers the rest of the engine, which imports it only through this file.
export { LeaseOps } from "./lease-ops.js";
