import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  connect,
  type IncomingHttpHeaders,
} from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  WatchRunRequestSchema,
  type WatchRunResponse,
  WatchRunResponseSchema,
} from "@weft/sdk/gen/weft/v1/workflow_service_pb.js";

const EMPTY: Buffer = Buffer.alloc(0);

/**
 * A minimal gRPC client of WatchRun on one HTTP/2 connection: node:http2 and protobuf-es, no
 * per-message async iterators. The bench uses it to receive 1,000 streams on the same two cores
 * as weftd while costing those cores as little as a receiver can; it decodes every message and
 * checks the final grpc-status like any gRPC client.
 */
export class GrpcWatchConnection {
  private readonly session: ClientHttp2Session;

  constructor(address: string) {
    this.session = connect(`http://${address}`);
    // A failure reaches every open stream as its own error.
    this.session.on("error", () => {});
  }

  /**
   * Watches `runId` until the stream ends; `onMessage` gets every response as it is decoded.
   * Rejects with the status of a call that does not end OK.
   */
  watch(runId: string, onMessage: (m: WatchRunResponse) => void, signal: AbortSignal): Promise<void> {
    const body = toBinary(WatchRunRequestSchema, create(WatchRunRequestSchema, { runId }));
    const request = Buffer.alloc(5 + body.length);
    request.writeUInt32BE(body.length, 1);
    request.set(body, 5);
    const stream: ClientHttp2Stream = this.session.request(
      {
        ":method": "POST",
        ":path": "/weft.v1.WorkflowService/WatchRun",
        "content-type": "application/grpc+proto",
        te: "trailers",
      },
      { signal },
    );
    stream.end(request);
    return new Promise<void>((resolve, reject) => {
      let pending = EMPTY;
      let status: IncomingHttpHeaders | undefined;
      let failed = false;
      const fail = (err: Error) => {
        if (failed) return;
        failed = true;
        stream.destroy();
        reject(err);
      };
      // A trailers-only response (an error before any message) carries its status in the headers.
      stream.on("response", (headers) => {
        if (headers["grpc-status"] !== undefined) status = headers;
      });
      stream.on("trailers", (trailers) => {
        status = trailers;
      });
      stream.on("data", (chunk: Buffer) => {
        const buf = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
        let offset = 0;
        while (buf.length - offset >= 5) {
          const length = buf.readUInt32BE(offset + 1);
          if (buf.length - offset < 5 + length) break;
          if (buf[offset] !== 0) {
            fail(
              new Error(`WatchRun sent an envelope with flags ${buf[offset]}; this client asked for none`),
            );
            return;
          }
          onMessage(fromBinary(WatchRunResponseSchema, buf.subarray(offset + 5, offset + 5 + length)));
          offset += 5 + length;
        }
        pending = offset === buf.length ? EMPTY : buf.subarray(offset);
      });
      stream.on("error", (err) => fail(err));
      stream.on("close", () => {
        if (failed) return;
        const code = status?.["grpc-status"];
        if (code === "0" && pending.length === 0) resolve();
        else
          fail(
            new Error(
              `WatchRun ended with grpc-status ${code ?? "(none)"}: ${String(status?.["grpc-message"] ?? "")}` +
                (pending.length === 0 ? "" : ` and ${pending.length} bytes of an incomplete message`),
            ),
          );
      });
    });
  }

  close(): void {
    this.session.close();
  }
}
