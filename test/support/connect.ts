import { gzipSync } from "node:zlib";

/** The outcome of a Connect-protocol JSON call. */
export interface ConnectJsonResult {
  /** HTTP status: 200 on success, else the Connect mapping of the error code. */
  status: number;
  /** The decoded JSON body: the response message, or `{ code, message }` on error. */
  body: Record<string, unknown>;
}

/**
 * Calls `procedure` (e.g. "grpc.health.v1.Health/Check") with the Connect protocol, JSON encoding,
 * over HTTP/1.1 with plain fetch; `gzip` compresses the request body (Content-Encoding: gzip).
 */
export async function connectJson(
  baseUrl: string,
  procedure: string,
  request: unknown,
  options: { gzip?: boolean } = {},
): Promise<ConnectJsonResult> {
  const json = Buffer.from(JSON.stringify(request));
  const headers: Record<string, string> = {
    "content-type": "application/json",
    "connect-protocol-version": "1",
  };
  if (options.gzip === true) headers["content-encoding"] = "gzip";
  const response = await fetch(`${baseUrl}/${procedure}`, {
    method: "POST",
    headers,
    body: options.gzip === true ? gzipSync(json) : json,
    signal: AbortSignal.timeout(10_000),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}
