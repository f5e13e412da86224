import { once } from "node:events";
import { createConnection, createServer, type Socket } from "node:net";

/** What a fault does to the connections it matches. */
export type ProxyFault =
  /** Reset at once, and every new one at its first bytes. */
  | "reset"
  /**
   * Kept open, but nothing passes either way (a cut link, a frozen peer); what was sent meanwhile
   * arrives, in order, once healed, as TCP would deliver it after a link comes back.
   */
  | "blackhole";

/** One connection through the proxy. */
export interface ProxiedConnection {
  /** The client's first bytes, as text (for Redis: often `CLIENT SETNAME <name>`). */
  readonly firstBytes: string;
  readonly client: Socket;
  readonly upstream: Socket;
}

/**
 * A TCP proxy on a free loopback port, for fault tests: it forwards to `target` and can reset or
 * black-hole the connections whose first bytes match a pattern, and later let them through again.
 */
export interface TcpProxy {
  readonly port: number;
  /** Connections open now. */
  readonly connections: readonly ProxiedConnection[];
  /** Applies `fault` to the connections whose first bytes match `pattern`, now and from now on. */
  fault(fault: ProxyFault, pattern?: RegExp): void;
  /** Lifts every fault: new connections pass; black-holed ones pass again. */
  heal(): void;
  close(): Promise<void>;
}

/** Starts a {@link TcpProxy} to `host:port`. */
export async function startTcpProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  type Held = { -readonly [K in keyof ProxiedConnection]: ProxiedConnection[K] } & {
    held: boolean;
    toUpstream: Buffer[];
    toClient: Buffer[];
  };
  const connections = new Set<Held>();
  let active: { fault: ProxyFault; pattern: RegExp } | undefined;
  const matches = (c: ProxiedConnection) =>
    active !== undefined && c.firstBytes !== "" && active.pattern.test(c.firstBytes);
  const apply = (c: Held) => {
    if (!matches(c)) return;
    if (active?.fault === "reset") {
      c.client.resetAndDestroy();
      c.upstream.destroy();
    } else {
      c.held = true;
    }
  };

  const server = createServer((client) => {
    const upstream = createConnection(target);
    const c: Held = { firstBytes: "", client, upstream, held: false, toUpstream: [], toClient: [] };
    connections.add(c);
    const drop = () => {
      connections.delete(c);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", drop).on("close", drop);
    upstream.on("error", drop).on("close", drop);
    client.on("data", (chunk: Buffer) => {
      if (c.firstBytes === "") {
        c.firstBytes = chunk.toString("latin1").replace(/\r\n(\$\d+\r\n)?/g, " ");
        apply(c);
      }
      if (c.held) c.toUpstream.push(chunk);
      else if (!upstream.destroyed) upstream.write(chunk);
    });
    upstream.on("data", (chunk: Buffer) => {
      if (c.held) c.toClient.push(chunk);
      else if (!client.destroyed) client.write(chunk);
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("proxy has no port");
  return {
    port: address.port,
    get connections() {
      return [...connections];
    },
    fault(fault, pattern = /./) {
      active = { fault, pattern };
      for (const c of [...connections]) apply(c);
    },
    heal() {
      active = undefined;
      for (const c of connections) {
        c.held = false;
        for (const chunk of c.toUpstream.splice(0)) c.upstream.write(chunk);
        for (const chunk of c.toClient.splice(0)) c.client.write(chunk);
      }
    },
    async close() {
      for (const c of [...connections]) {
        c.client.destroy();
        c.upstream.destroy();
      }
      server.close();
      await once(server, "close");
    },
  };
}
