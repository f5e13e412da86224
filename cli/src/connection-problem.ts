import { get as httpGet } from "node:http";
import { connect as http2Connect } from "node:http2";
import { connect as tlsConnect } from "node:tls";

/** Where the command tried to reach weftd, as the user gave it. */
export interface Target {
  /** The address as given (`127.0.0.1:7233`, `https://weft.internal:7233`). */
  address: string;
  /** The URL the client used (`http://…` or `https://…`). */
  baseUrl: string;
}

/** How long a probe may take: it only runs after a call already failed. */
const PROBE_MS = 2_000;

/** Certificate checks that failed on our side (the server is there and speaks TLS). */
const UNTRUSTED = new Set([
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

/**
 * One line saying what is wrong with the connection to weftd, when `err` failed for lack of one
 * (nothing listening, a host that does not resolve, another protocol on the port, a TLS mismatch),
 * or undefined when weftd answered (its own errors are printed as they are). After a protocol
 * mismatch it probes the port once, so that the line says what the port does speak.
 */
export async function connectionProblem(err: unknown, target: Target): Promise<string | undefined> {
  const cause = systemCause(err);
  if (cause === undefined) return undefined;
  const { code, message } = cause;
  const at = target.address;
  const url = new URL(target.baseUrl);
  const tls = url.protocol === "https:";
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const port = Number(url.port || (tls ? 443 : 80));
  if (code === "ECONNREFUSED") {
    return `no weftd at ${at}: connection refused (is weftd running? \`pnpm weft dev\` starts one)`;
  }
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") return `cannot resolve ${host}, the host of ${at}`;
  if (["ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "EADDRNOTAVAIL"].includes(code)) {
    return `cannot reach ${at} (${code})`;
  }
  if (UNTRUSTED.has(code)) {
    return `TLS: the certificate of ${at} is not trusted (${message}); give the CA that signed it with --ca`;
  }
  if (/certificate required/i.test(message)) {
    return `TLS: the server at ${at} asks for a client certificate; give it with --cert and --key`;
  }
  if (tls) {
    if (await speaksPlainHttp2(host, port)) {
      return `TLS handshake failed: the server at ${at} speaks plaintext; use http:// or drop --ca/--cert/--key`;
    }
    if (await speaksHttp1(host, port)) {
      return `TLS handshake failed: the server at ${at} speaks plain HTTP/1.1, not gRPC; is it the metrics port?`;
    }
    return `TLS handshake with ${at} failed: ${message}`;
  }
  if (await speaksTls(host, port)) {
    return `the server at ${at} speaks TLS; use https://${url.host} (and --ca if its certificate is private)`;
  }
  if (await speaksHttp1(host, port)) {
    return `no gRPC server at ${at}: it answers HTTP/1.1, not HTTP/2; is it the metrics port?`;
  }
  return `no gRPC server at ${at}: ${message}`;
}

/** Codes of Node's errors that mean the connection, not weftd, failed. */
const NETWORK =
  /^(ECONN\w+|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|EADDRNOTAVAIL|EPROTO|EPIPE|ERR_HTTP2_\w+|ERR_SSL_\w+|ERR_TLS_\w+)$/;

/** The Node network, TLS or HTTP/2 error under `err`, if any. */
function systemCause(err: unknown): { code: string; message: string } | undefined {
  let e: unknown = err;
  for (let depth = 0; depth < 8 && e instanceof Error; depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === "string" && (NETWORK.test(code) || UNTRUSTED.has(code))) {
      return { code, message: e.message };
    }
    // The SDK's own word for an HTTP/2 stream the server reset before any answer: a server that is
    // not weftd, or one that wants TLS.
    if (/the stream closed without an answer/.test(e.message)) {
      return { code: "ERR_HTTP2_STREAM_CLOSED", message: e.message.replace(/^\[\w+\] /, "") };
    }
    e = e.cause;
  }
  return undefined;
}

/** Whether the port answers a plaintext HTTP/2 connection with the server's SETTINGS. */
function speaksPlainHttp2(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const session = http2Connect(`http://${host.includes(":") ? `[${host}]` : host}:${port}`);
    const done = (yes: boolean) => {
      clearTimeout(timer);
      session.destroy();
      resolve(yes);
    };
    const timer = setTimeout(() => done(false), PROBE_MS);
    session.once("remoteSettings", () => done(true));
    session.once("error", () => done(false));
    session.once("close", () => done(false));
  });
}

/** Whether the port completes a TLS handshake (its certificate is not checked: this only asks). */
function speaksTls(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host, port, rejectUnauthorized: false, ALPNProtocols: ["h2"] });
    const done = (yes: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(yes);
    };
    const timer = setTimeout(() => done(false), PROBE_MS);
    socket.once("secureConnect", () => done(true));
    socket.once("error", () => done(false));
  });
}

/** Whether the port answers a plain HTTP/1.1 request (weftd's metrics port does). */
function speaksHttp1(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = httpGet({ host, port, path: "/healthz", timeout: PROBE_MS }, (res) => {
      res.resume();
      resolve(true);
    });
    req.once("timeout", () => req.destroy());
    req.once("error", () => resolve(false));
  });
}
