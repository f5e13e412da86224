// failures/: what happens to work that failed for good: dead letters (an entry per task that failed
// for good, kept with its run, listed through indexes), resuming finished runs (planned here, done by
// the RESUME step of runs/), and circuit breakers per task queue or handler (checked at hand-over).
// Code outside this folder imports only this file (checked by pnpm check:imports).
export { Circuits, type CircuitVerdict, countsForCircuit } from "./circuits.js";
export { type EntryFilter, entryFilterOf, parseEntryId } from "./dead-letter-ids.js";
export { DeadLetterIndex, type EntryPlace, memberOf, type StoredEntry } from "./dead-letter-index.js";
export { DeadLetterReads } from "./dead-letter-reads.js";
export { type BulkRetry, DeadLetters } from "./dead-letters.js";
export { FailureStats } from "./failure-stats.js";
export { ResumeOps, type ResumeRequest, type ResumeResult } from "./resume.js";
export { planResume } from "./resume-plan.js";
