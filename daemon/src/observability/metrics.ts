import { once } from "node:events";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

type MetricType = "gauge" | "counter";

interface Metric {
  name: string;
  help: string;
  type: MetricType;
  read: () => number | ReadonlyMap<string, number>;
}

/**
 * The metrics /metrics exposes in the Prometheus text format. Each metric is read when scraped,
 * so a module registers a function over state it already keeps.
 */
export class MetricsRegistry {
  private readonly metrics = new Map<string, Metric>();

  /**
   * Adds a metric read at each scrape. `read` returns one value, or values by label set
   * (keys such as `queue="emails"`). Registering a name twice replaces the first one.
   */
  register(name: string, type: MetricType, help: string, read: Metric["read"]): void {
    if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(name))
      throw new Error(`invalid metric name ${JSON.stringify(name)}`);
    this.metrics.set(name, { name, help, type, read });
  }

  /** The Prometheus text exposition of every metric. */
  render(): string {
    const lines: string[] = [];
    for (const metric of this.metrics.values()) {
      lines.push(
        `# HELP ${metric.name} ${metric.help.replace(/\n/g, " ")}`,
        `# TYPE ${metric.name} ${metric.type}`,
      );
      const value = metric.read();
      if (typeof value === "number") {
        lines.push(`${metric.name} ${formatNumber(value)}`);
      } else {
        for (const [labels, v] of value) lines.push(`${metric.name}{${labels}} ${formatNumber(v)}`);
      }
    }
    return `${lines.join("\n")}\n`;
  }
}

function formatNumber(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Number.POSITIVE_INFINITY) return "+Inf";
  if (value === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(value);
}

/** Registers the process metrics every weftd exposes. */
export function registerProcessMetrics(metrics: MetricsRegistry): void {
  const startSeconds = Date.now() / 1000;
  metrics.register(
    "process_start_time_seconds",
    "gauge",
    "Start time of the process since the Unix epoch.",
    () => Math.floor(startSeconds),
  );
  metrics.register("process_uptime_seconds", "gauge", "Seconds since weftd started.", () => process.uptime());
  metrics.register("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", () =>
    process.memoryUsage.rss(),
  );
  metrics.register(
    "nodejs_heap_used_bytes",
    "gauge",
    "V8 heap in use, in bytes.",
    () => process.memoryUsage().heapUsed,
  );
  metrics.register(
    "nodejs_heap_total_bytes",
    "gauge",
    "V8 heap reserved (in use, and free space V8 keeps), in bytes.",
    () => process.memoryUsage().heapTotal,
  );
  metrics.register(
    "nodejs_external_memory_bytes",
    "gauge",
    "Memory of objects outside V8's heap (Buffers, ArrayBuffers), in bytes.",
    () => process.memoryUsage().external,
  );
  metrics.register(
    "process_cpu_seconds_total",
    "counter",
    "User and system CPU time spent, in seconds.",
    () => {
      const { user, system } = process.cpuUsage();
      return (user + system) / 1e6;
    },
  );
}

/** A running metrics HTTP server. */
export interface MetricsServer {
  readonly port: number;
  readonly address: string;
  close(): Promise<void>;
}

/**
 * Serves `GET /metrics` (Prometheus text) and `GET /healthz` (200 "ok" while serving, 503 otherwise)
 * over plain HTTP/1.1.
 */
export async function startMetricsServer(
  host: string,
  port: number,
  metrics: MetricsRegistry,
  serving: () => boolean,
): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end();
    } else if (path === "/metrics") {
      res
        .writeHead(200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" })
        .end(metrics.render());
    } else if (path === "/healthz") {
      const ok = serving();
      res.writeHead(ok ? 200 : 503, { "content-type": "text/plain" }).end(ok ? "ok\n" : "not serving\n");
    } else {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found: try /metrics or /healthz\n");
    }
  });
  server.listen(port, host);
  await Promise.race([once(server, "listening"), once(server, "error").then(([err]) => Promise.reject(err))]);
  const bound = server.address() as AddressInfo;
  return {
    port: bound.port,
    address: formatAddress(bound.address, bound.port),
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** "host:port", with brackets around IPv6 hosts. */
export function formatAddress(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}
