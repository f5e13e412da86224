/** A host and port of a Redis node or Sentinel. */
export interface RedisAddress {
  host: string;
  port: number;
}

/** Credentials and TLS, the same for every node of a Cluster or a Sentinel setup. */
interface RedisAccess {
  /** `rediss…`: TLS to every node (with the system's CA certificates). */
  tls: boolean;
  username?: string;
  password?: string;
}

/** The Redis a URL names: one server, a Cluster, or a primary found through Sentinels. */
export type RedisTarget =
  | { kind: "standalone"; url: string }
  | ({ kind: "cluster"; nodes: RedisAddress[] } & RedisAccess)
  | ({
      kind: "sentinel";
      sentinels: RedisAddress[];
      /** The name the Sentinels know the primary by. */
      name: string;
      db: number;
      sentinelUsername?: string;
      sentinelPassword?: string;
    } & RedisAccess);

/** The URL forms weftd takes, for error messages and --help. */
export const REDIS_URL_FORMS =
  "redis://[user:password@]host:port[/db] (one server), " +
  "redis+cluster://[user:password@]host:port[,host:port…] (a Redis Cluster: any of its nodes), " +
  "redis+sentinel://[user:password@]host:port[,host:port…]/<master name>[/db][?sentinelPassword=…] (Sentinels); " +
  "rediss… for TLS";

const MULTI_HOST = /^(rediss?)\+(cluster|sentinel):\/\/(?:([^@/?#]*)@)?([^/?#]*)(\/[^?#]*)?(?:\?([^#]*))?$/;

/**
 * Parses a Redis URL: `redis://` or `rediss://` (one server), `redis+cluster://` or
 * `rediss+cluster://` (a Redis Cluster, one or more of its nodes), `redis+sentinel://` or
 * `rediss+sentinel://` (Sentinels and the name of the primary they watch). Throws an Error
 * saying what is wrong and what is expected.
 */
export function parseRedisTarget(text: string): RedisTarget {
  const match = MULTI_HOST.exec(text);
  if (match === null) {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      throw new Error(`expected a URL: ${REDIS_URL_FORMS}`);
    }
    if (url.protocol !== "redis:" && url.protocol !== "rediss:")
      throw new Error(`unknown scheme ${url.protocol.slice(0, -1)}: expected ${REDIS_URL_FORMS}`);
    if (url.hostname === "") throw new Error("names no host: expected redis://host:port");
    return { kind: "standalone", url: url.toString() };
  }
  const [, scheme, kind, userinfo, hosts, path = "", query = ""] = match;
  const access: RedisAccess = { tls: scheme === "rediss", ...credentials(userinfo) };
  const params = new URLSearchParams(query);
  if (kind === "cluster") {
    const nodes = addresses(hosts ?? "", 6379);
    if (path !== "" && path !== "/")
      throw new Error(`a Redis Cluster has no databases or names, got the path ${JSON.stringify(path)}`);
    for (const key of params.keys()) throw new Error(`unknown parameter "${key}" of a redis+cluster:// URL`);
    return { kind: "cluster", nodes, ...access };
  }
  const sentinels = addresses(hosts ?? "", 26379);
  const parts = path.split("/").filter((p) => p !== "");
  const [name, db = "0", ...rest] = parts.map(decodeURIComponent);
  if (name === undefined)
    throw new Error("names no primary: expected redis+sentinel://host:port/<master name>, e.g. /mymaster");
  if (rest.length > 0 || !/^\d+$/.test(db))
    throw new Error(`expected /<master name>[/<db number>] after the Sentinels, got ${JSON.stringify(path)}`);
  const sentinel: RedisTarget = { kind: "sentinel", sentinels, name, db: Number(db), ...access };
  for (const [key, value] of params) {
    if (key === "sentinelPassword") sentinel.sentinelPassword = value;
    else if (key === "sentinelUsername") sentinel.sentinelUsername = value;
    else
      throw new Error(
        `unknown parameter "${key}" of a redis+sentinel:// URL (known: sentinelUsername, sentinelPassword)`,
      );
  }
  return sentinel;
}

function credentials(userinfo: string | undefined): { username?: string; password?: string } {
  if (userinfo === undefined || userinfo === "") return {};
  const colon = userinfo.indexOf(":");
  const username = decodeURIComponent(colon === -1 ? userinfo : userinfo.slice(0, colon));
  const password = colon === -1 ? undefined : decodeURIComponent(userinfo.slice(colon + 1));
  return {
    ...(username === "" ? {} : { username }),
    ...(password === undefined || password === "" ? {} : { password }),
  };
}

/** "h1:p1,[::1]:p2,h3" → addresses; a missing port is `defaultPort`. */
function addresses(text: string, defaultPort: number): RedisAddress[] {
  if (text === "") throw new Error("names no host: expected host:port[,host:port…]");
  return text.split(",").map((part) => {
    const m = /^(?:\[([^\]]+)\]|([^:[\]]+))(?::(\d+))?$/.exec(part.trim());
    const port = Number(m?.[3] ?? defaultPort);
    if (m === null || !Number.isInteger(port) || port < 1 || port > 65535)
      throw new Error(`invalid host:port ${JSON.stringify(part)}`);
    return { host: m[1] ?? m[2] ?? "", port };
  });
}

/** The URL with its passwords masked, for logs. */
export function redactRedisUrl(text: string): string {
  const match = MULTI_HOST.exec(text);
  if (match === null) {
    try {
      const url = new URL(text);
      if (url.password !== "") url.password = "***";
      return url.toString();
    } catch {
      return "<invalid url>";
    }
  }
  const [, scheme, kind, userinfo, hosts, path = "", query] = match;
  let user = "";
  if (userinfo !== undefined && userinfo !== "") {
    const colon = userinfo.indexOf(":");
    user = colon === -1 ? `${userinfo}@` : `${userinfo.slice(0, colon)}:***@`;
  }
  let params = "";
  if (query !== undefined && query !== "") {
    const search = new URLSearchParams(query);
    if (search.has("sentinelPassword")) search.set("sentinelPassword", "***");
    params = `?${search.toString()}`;
  }
  return `${scheme}+${kind}://${user}${hosts}${path}${params}`;
}

/** "host:port" of the first node a target names, for messages. */
export function firstAddress(target: RedisTarget): string {
  if (target.kind === "standalone") {
    const url = new URL(target.url);
    return `${url.hostname}:${url.port === "" ? 6379 : url.port}`;
  }
  const first = target.kind === "cluster" ? target.nodes[0] : target.sentinels[0];
  return first === undefined ? "" : `${first.host}:${first.port}`;
}
