import { Redis, type RedisOptions } from "ioredis";
import type { RedisTarget } from "./redis-target.js";

/** What one Redis server says about itself (INFO). */
export interface RedisFacts {
  /** "host:port" asked. */
  address: string;
  /** `redis_mode`: standalone, cluster or sentinel. */
  mode: string;
  /** `redis_version`. */
  version: string;
  /** `role`: master or slave (none for a Sentinel). */
  role: string;
  /** `maxmemory_policy`. */
  maxmemoryPolicy: string;
  /** `aof_enabled`. */
  aof: boolean;
  /** For a Sentinel: the names of the primaries it watches. */
  masters: string[];
  /** For a Sentinel asked about a primary it watches: that primary's address. */
  primary?: { host: string; port: number };
}

/** The verdict on a Redis URL against what its servers say. */
export interface RedisVerdict {
  /** Why weftd must not start on it: the URL does not match what it names, and what to set instead. */
  refusal?: string;
  /** What an operator should know (eviction, persistence, a replica). */
  warnings: string[];
  /** Facts of the data server checked (the primary, a Cluster node). */
  facts?: RedisFacts;
}

/** Variables that give weftd its Redis URL, for messages. */
const URL_SETTING = "--redis-url (or WEFT_REDIS_URL, REDIS_URL, or redis.url in the --config file)";

/**
 * Asks the servers a Redis URL names what they are, over short-lived connections of its own, and
 * judges whether weftd can use them as the URL says: a plain URL of a Cluster node or of a
 * Sentinel, a Cluster URL of a server not in cluster mode, a Sentinel URL of a data server, or
 * Sentinels that know no primary by the name given are refused with a message saying what to set.
 * Undefined when no server answered within `timeoutMs` (Redis down): ask again later.
 */
export async function probeRedis(target: RedisTarget, timeoutMs: number): Promise<RedisVerdict | undefined> {
  if (target.kind === "standalone") {
    const answer = await ask({ url: target.url }, timeoutMs);
    return answer === undefined
      ? undefined
      : "facts" in answer
        ? judgeStandalone(target, answer.facts)
        : judgeRefused(answer);
  }
  const access: RedisOptions = {
    username: target.username,
    password: target.password,
    tls: target.tls ? {} : undefined,
  };
  if (target.kind === "cluster") {
    for (const node of target.nodes) {
      const answer = await ask({ ...access, ...node }, timeoutMs);
      if (answer !== undefined)
        return "facts" in answer ? judgeCluster(target, answer.facts) : judgeRefused(answer);
    }
    return undefined;
  }
  const sentinelAccess: RedisOptions = {
    username: target.sentinelUsername,
    password: target.sentinelPassword,
    tls: target.tls ? {} : undefined,
  };
  for (const sentinel of target.sentinels) {
    const answer = await ask({ ...sentinelAccess, ...sentinel }, timeoutMs, target.name);
    if (answer === undefined) continue;
    if (!("facts" in answer)) return judgeRefused(answer);
    const { facts } = answer;
    const where = facts.address;
    if (facts.mode !== "sentinel") {
      return {
        refusal:
          `Redis at ${where} is not a Sentinel (redis_mode:${facts.mode}): a redis+sentinel:// URL names Sentinels; ` +
          `to use this server directly set ${URL_SETTING} to ${facts.mode === "cluster" ? "redis+cluster" : "redis"}${target.tls ? "s" : ""}://${where}`,
        warnings: [],
      };
    }
    if (!facts.masters.includes(target.name)) {
      return {
        refusal:
          `the Sentinel at ${where} watches no primary named "${target.name}"` +
          (facts.masters.length > 0 ? ` (it watches ${facts.masters.map((m) => `"${m}"`).join(", ")})` : "") +
          `: set the name in ${URL_SETTING}, redis+sentinel://host:port/<master name>`,
        warnings: [],
      };
    }
    // The primary the Sentinels name: what it is, for the log and the warnings. One that does not
    // answer (a failover under way) is not held against the URL.
    const primary =
      facts.primary === undefined ? undefined : await ask({ ...access, ...facts.primary }, timeoutMs);
    if (primary === undefined || !("facts" in primary)) return { warnings: [] };
    return { warnings: commonWarnings(primary.facts), facts: primary.facts };
  }
  return undefined;
}

/** A server refused weftd's credentials (weftd must not start), or refused INFO (nothing checked). */
function judgeRefused(answer: { refused: string; auth: boolean }): RedisVerdict {
  if (answer.auth)
    return { refusal: `${answer.refused}: check the user and password in ${URL_SETTING}`, warnings: [] };
  return { warnings: [`${answer.refused} to INFO: weftd could not check what it is`] };
}

function judgeStandalone(target: { url: string }, facts: RedisFacts): RedisVerdict {
  const url = new URL(target.url);
  const tls = url.protocol === "rediss:";
  if (facts.mode === "cluster") {
    return {
      refusal:
        `Redis at ${facts.address} is a Redis Cluster node: weftd uses a Cluster only through the Cluster option; ` +
        `set ${URL_SETTING} to redis${tls ? "s" : ""}+cluster://${facts.address} (more nodes may follow, comma-separated)`,
      warnings: [],
      facts,
    };
  }
  if (facts.mode === "sentinel") {
    const name = facts.masters[0] ?? "<master name>";
    return {
      refusal:
        `Redis at ${facts.address} is a Sentinel, not a data server: ` +
        `set ${URL_SETTING} to redis${tls ? "s" : ""}+sentinel://${facts.address}/${name}` +
        (facts.masters.length > 1 ? ` (it watches ${facts.masters.join(", ")})` : ""),
      warnings: [],
      facts,
    };
  }
  const warnings = commonWarnings(facts);
  if (facts.role === "slave") {
    warnings.push(
      `Redis at ${facts.address} is a replica: it refuses writes, so calls fail UNAVAILABLE; ` +
        "point weftd at the primary, or at its Sentinels with redis+sentinel://",
    );
  }
  return { warnings, facts };
}

function judgeCluster(target: { tls: boolean }, facts: RedisFacts): RedisVerdict {
  if (facts.mode !== "cluster") {
    const scheme = facts.mode === "sentinel" ? "redis+sentinel" : "redis";
    return {
      refusal:
        `Redis at ${facts.address} is not a Redis Cluster node (redis_mode:${facts.mode}): ` +
        `set ${URL_SETTING} to ${scheme}${target.tls ? "s" : ""}://${facts.address}` +
        (facts.mode === "sentinel" ? "/<master name>" : ""),
      warnings: [],
      facts,
    };
  }
  const major = Number(facts.version.split(".")[0]);
  if (!(major >= 7)) {
    return {
      refusal:
        `the Redis Cluster at ${facts.address} runs Redis ${facts.version}; on a Cluster weftd needs Redis 7.0 ` +
        "or later (its watch events use sharded pub/sub, SPUBLISH)",
      warnings: [],
      facts,
    };
  }
  return { warnings: commonWarnings(facts), facts };
}

function commonWarnings(facts: RedisFacts): string[] {
  const warnings: string[] = [];
  if (facts.maxmemoryPolicy !== "" && facts.maxmemoryPolicy !== "noeviction") {
    warnings.push(
      `Redis at ${facts.address} evicts keys when full (maxmemory-policy ${facts.maxmemoryPolicy}): runs, ` +
        "queued tasks and leases would vanish; set maxmemory-policy noeviction",
    );
  }
  return warnings;
}

/** What asking one server gave: its facts, or a refusal of weftd's credentials or of INFO. */
type Answer = { facts: RedisFacts } | { refused: string; auth: boolean };

/** INFO of one server (and, for a Sentinel, the names of its primaries); undefined when it does not answer. */
async function ask(
  options: RedisOptions & { url?: string },
  timeoutMs: number,
  primaryName?: string,
): Promise<Answer | undefined> {
  const { url, ...rest } = options;
  const settings: RedisOptions = {
    ...rest,
    lazyConnect: true,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    enableOfflineQueue: false,
    connectionName: "weftd-probe",
  };
  const redis = url === undefined ? new Redis(settings) : new Redis(url, settings);
  let lastError: Error | undefined;
  redis.on("error", (err: Error) => {
    lastError = err;
  });
  const host = (redis.options.host ?? "").includes(":") ? `[${redis.options.host}]` : redis.options.host;
  const where = `${host}:${redis.options.port}`;
  try {
    await redis.connect();
    const text = await redis.info();
    const field = (name: string) => new RegExp(`^${name}:(.*)$`, "m").exec(text)?.[1]?.trim() ?? "";
    const mode = field("redis_mode") || "standalone";
    let masters: string[] = [];
    let primary: { host: string; port: number } | undefined;
    if (mode === "sentinel") {
      const list = (await redis.call("SENTINEL", "MASTERS")) as string[][];
      masters = list.map((fields) => fields[fields.indexOf("name") + 1] ?? "").filter((n) => n !== "");
      if (primaryName !== undefined && masters.includes(primaryName)) {
        const addr = (await redis.call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", primaryName)) as
          | [string, string]
          | null;
        if (addr !== null) primary = { host: addr[0], port: Number(addr[1]) };
      }
    }
    return {
      facts: {
        address: where,
        mode,
        version: field("redis_version"),
        role: field("role"),
        maxmemoryPolicy: field("maxmemory_policy"),
        aof: field("aof_enabled") === "1",
        masters,
        ...(primary === undefined ? {} : { primary }),
      },
    };
  } catch (err) {
    const reply = [err, lastError].find(
      (e): e is Error => e instanceof Error && /^(WRONGPASS|NOAUTH|NOPERM|ERR)\b/.test(e.message),
    );
    if (reply === undefined) return undefined;
    return {
      refused: `Redis at ${where} answered ${reply.message.split("\n")[0]}`,
      auth: /^(WRONGPASS|NOAUTH)\b/.test(reply.message) || /AUTH/i.test(reply.message),
    };
  } finally {
    redis.disconnect();
  }
}
