import { readFileSync } from "node:fs";

const TICKS_PER_SECOND = 100;

/** CPU time (user + system) a process used so far, in ms; undefined once it is gone. */
export function cpuMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may hold spaces) start after the last ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return ((utime + stime) / TICKS_PER_SECOND) * 1000;
  } catch {
    return undefined;
  }
}

/** Read and write system calls a process made so far (/proc/<pid>/io); zeros once it is gone. */
export function syscalls(pid: number): { reads: number; writes: number } {
  try {
    const io = readFileSync(`/proc/${pid}/io`, "utf8");
    return {
      reads: Number(/^syscr:\s+(\d+)/m.exec(io)?.[1] ?? 0),
      writes: Number(/^syscw:\s+(\d+)/m.exec(io)?.[1] ?? 0),
    };
  } catch {
    return { reads: 0, writes: 0 };
  }
}

/** What a process used over a span. */
export interface ProcessUsage {
  cpuMs: number;
  readCalls: number;
  writeCalls: number;
}

/** Measures the CPU time and system calls of a set of named processes between `start()` and `stop()`. */
export class CpuMeter {
  private readonly startAt = new Map<string, ProcessUsage>();

  constructor(private readonly pids: Record<string, number>) {}

  private static read(pid: number): ProcessUsage {
    const io = syscalls(pid);
    return { cpuMs: cpuMs(pid) ?? 0, readCalls: io.reads, writeCalls: io.writes };
  }

  start(): this {
    for (const [name, pid] of Object.entries(this.pids)) this.startAt.set(name, CpuMeter.read(pid));
    return this;
  }

  /** CPU ms used by each process since `start()`. */
  stop(): Record<string, number> {
    return Object.fromEntries(Object.entries(this.usage()).map(([name, u]) => [name, u.cpuMs]));
  }

  /** CPU ms and system calls of each process since `start()`. */
  usage(): Record<string, ProcessUsage> {
    const used: Record<string, ProcessUsage> = {};
    for (const [name, pid] of Object.entries(this.pids)) {
      const now = CpuMeter.read(pid);
      const then = this.startAt.get(name) ?? { cpuMs: 0, readCalls: 0, writeCalls: 0 };
      used[name] = {
        cpuMs: now.cpuMs - then.cpuMs,
        readCalls: now.readCalls - then.readCalls,
        writeCalls: now.writeCalls - then.writeCalls,
      };
    }
    return used;
  }
}

/** The pid of the Redis server behind a client (INFO server). */
export async function redisPid(redis: { info(section: string): Promise<string> }): Promise<number> {
  const info = await redis.info("server");
  return Number(/process_id:(\d+)/.exec(info)?.[1] ?? 0);
}

/** Busy and total jiffies of the whole machine (first line of /proc/stat). */
function machineJiffies(): { busy: number; total: number } {
  const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0] ?? "";
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = v;
  const busy = user + nice + system + irq + softirq + steal;
  return { busy, total: busy + idle + iowait };
}

/** CPU ms of this process and of its children that have exited (cutime + cstime). */
function selfAndReapedMs(): number {
  const stat = readFileSync("/proc/self/stat", "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / TICKS_PER_SECOND) * 1000;
}

/** How busy the machine was during a scenario, and how much of that was not the bench. */
export interface MachineLoad {
  /** Share of all cores busy, %. */
  busyPercent: number;
  /** Share of all cores busy with processes other than the bench, its children and its Redis, %. */
  othersPercent: number;
  loadAverageStart: number;
  loadAverageEnd: number;
  /** Seconds waited for a quiet machine before the scenario (--wait-quiet). */
  waitedS?: number;
}

/**
 * Measures machine load over a span in which every child of the bench exits before `stop()` (so that
 * their CPU time is in this process's cutime/cstime). `extraPids` are long-lived processes of the
 * bench that are not its direct children (its Redis).
 */
export class MachineLoadMeter {
  private start = { busy: 0, total: 0, ours: 0, load: 0 };
  private extra: CpuMeter;

  constructor(extraPids: Record<string, number>) {
    this.extra = new CpuMeter(extraPids);
  }

  begin(): this {
    const j = machineJiffies();
    this.start = { ...j, ours: selfAndReapedMs(), load: loadAverage() };
    this.extra.start();
    return this;
  }

  end(): MachineLoad {
    const j = machineJiffies();
    const totalMs = ((j.total - this.start.total) / TICKS_PER_SECOND) * 1000;
    const busyMs = ((j.busy - this.start.busy) / TICKS_PER_SECOND) * 1000;
    const extraMs = Object.values(this.extra.stop()).reduce((a, b) => a + b, 0);
    const oursMs = selfAndReapedMs() - this.start.ours + extraMs;
    return {
      busyPercent: totalMs > 0 ? (busyMs / totalMs) * 100 : 0,
      othersPercent: totalMs > 0 ? (Math.max(0, busyMs - oursMs) / totalMs) * 100 : 0,
      loadAverageStart: this.start.load,
      loadAverageEnd: loadAverage(),
    };
  }
}

/** The 1-minute load average. */
export function loadAverage(): number {
  return Number(readFileSync("/proc/loadavg", "utf8").split(" ")[0]);
}

/** Share of the machine's CPU that was busy over the next `ms` milliseconds, %. */
export async function machineBusyPercent(ms: number): Promise<number> {
  const a = machineJiffies();
  await new Promise((resolve) => setTimeout(resolve, ms));
  const b = machineJiffies();
  const total = b.total - a.total;
  return total > 0 ? ((b.busy - a.busy) / total) * 100 : 0;
}

/**
 * Waits, while the bench itself is idle, until the machine's CPU is less than `maxBusyPercent` busy
 * for two consecutive seconds, or `maxWaitS` passed; returns the seconds waited and the last reading.
 */
export async function waitForQuiet(
  maxWaitS: number,
  maxBusyPercent = 15,
): Promise<{ waitedS: number; busy: number }> {
  const started = Date.now();
  let calm = 0;
  let busy = 0;
  while ((Date.now() - started) / 1000 < maxWaitS) {
    busy = await machineBusyPercent(1000);
    calm = busy < maxBusyPercent ? calm + 1 : 0;
    if (calm >= 2) break;
  }
  return { waitedS: (Date.now() - started) / 1000, busy };
}
