import type { ScheduleClock } from "./clock.js";

/**
 * Fire times counted per step when many were missed: a cron clock counts them one by one (about
 * 0.1 ms each in a time zone), so a long outage is counted over several steps, each short.
 */
export const COUNT_CHUNK = 500;

/** What one step of a due schedule does with its fire times. */
export interface FirePlan {
  /** Fire times this step counts as missed (older than the catch-up window, or over its bound). */
  missed: number;
  /** The fire time this step handles (starts, skips or buffers); undefined when none. */
  fire?: number;
  /** The schedule's next fire time after this step; undefined when it has none left (it ended). */
  next?: number;
}

/** What {@link planFires} works from. */
export interface PlanInput {
  clock: ScheduleClock;
  /** The schedule's next fire time as stored; due (at most `now`). */
  nextFire: number;
  /** The time of the step (Redis's clock). */
  now: number;
  catchUpWindowMs: number;
  maxCatchUp: number;
}

/**
 * Plans one step of a due schedule. The usual case, one fire time due, handles it (or counts it
 * missed when it is older than the catch-up window). When several are due — weftd was down —, the
 * latest `maxCatchUp` within the window are handled, oldest first, one per step, and the fire times
 * before them are counted as missed (in chunks of {@link COUNT_CHUNK}, a step each).
 */
export function planFires({ clock, nextFire, now, catchUpWindowMs, maxCatchUp }: PlanInput): FirePlan {
  const after = clock.next(nextFire);
  const windowStart = now - catchUpWindowMs;
  if (after === undefined || after > now) {
    return nextFire >= windowStart ? { missed: 0, fire: nextFire, next: after } : { missed: 1, next: after };
  }
  const kept = clock.latest(maxCatchUp, Math.max(nextFire, windowStart), now);
  const first = kept[0];
  // Every fire time before the first one kept is missed; none kept: every one up to now.
  const before = first ?? now + 1;
  const { count, resumeAt } = clock.count(nextFire, before, COUNT_CHUNK);
  if (resumeAt !== undefined) return { missed: count, next: resumeAt };
  if (first === undefined) return { missed: count, next: clock.next(now) };
  return { missed: count, fire: first, next: kept[1] ?? clock.next(first) };
}
