import type { Redis } from "ioredis";

/** Calls and CPU time of one Redis command over a span (INFO commandstats). */
export interface CommandStat {
  calls: number;
  usec: number;
}

/** Resets Redis's command statistics (CONFIG RESETSTAT). */
export async function resetCommandStats(redis: Redis): Promise<void> {
  await redis.config("RESETSTAT");
}

/** Redis's command statistics since the last reset, by command name. */
export async function commandStats(redis: Redis): Promise<Map<string, CommandStat>> {
  const info = await redis.info("commandstats");
  const out = new Map<string, CommandStat>();
  for (const line of info.split("\n")) {
    const m = /^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/.exec(line.trim());
    if (m !== null) out.set(m[1] as string, { calls: Number(m[2]), usec: Number(m[3]) });
  }
  return out;
}
