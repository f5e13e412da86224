import { execFileSync } from "node:child_process";
import { cpus, totalmem } from "node:os";
import type { Redis } from "ioredis";
import { REPO_ROOT } from "./paths.js";

/** What the figures were measured on. */
export interface MachineInfo {
  cores: number;
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  node: string;
  redis: string;
  bullmq: string;
  date: string;
  commit: string;
  /** Whether the working tree had uncommitted changes outside bench/. */
  dirty: boolean;
}

function git(args: string[]): string {
  try {
    return execFileSync("git", args, { cwd: REPO_ROOT, encoding: "utf8" }).trim();
  } catch {
    return "";
  }
}

function bullmqVersion(): string {
  try {
    return execFileSync(process.execPath, ["-e", "console.log(require('bullmq/package.json').version)"], {
      cwd: `${REPO_ROOT}bench`,
      encoding: "utf8",
    }).trim();
  } catch {
    return "unknown";
  }
}

export async function machineInfo(redis: Redis): Promise<MachineInfo> {
  const info = await redis.info("server");
  const redisVersion = /redis_version:(\S+)/.exec(info)?.[1] ?? "unknown";
  const status = git(["status", "--porcelain", "--", ".", ":!bench"]);
  let kernel = "";
  try {
    kernel = execFileSync("uname", ["-sr"], { encoding: "utf8" }).trim();
  } catch {
    kernel = process.platform;
  }
  return {
    cores: cpus().length,
    cpuModel: cpus()[0]?.model.trim() ?? "unknown",
    memoryGiB: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
    kernel,
    node: process.version,
    redis: redisVersion,
    bullmq: bullmqVersion(),
    date: new Date().toISOString(),
    commit: git(["rev-parse", "--short=12", "HEAD"]) || "unknown",
    dirty: status !== "",
  };
}
