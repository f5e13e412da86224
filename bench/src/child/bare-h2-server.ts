/**
 * A bare gRPC server on node:http2 alone (no Connect, no Weft, no Redis) answering
 * WorkflowService.GetWorkflow with an empty message: what the HTTP/2 layer and protobuf-es cost
 * per unary call, next to the bare Connect server's figure. It serves that one call and nothing
 * else a gRPC server must (deadlines, compression, errors). Sends its port to the parent.
 */
import { createServer } from "node:http2";
import { fromBinary } from "@bufbuild/protobuf";
import { GetWorkflowRequestSchema, WorkflowService } from "@weft/sdk/gen/weft/v1/workflow_service_pb.js";

const PATH = `/${WorkflowService.typeName}/${WorkflowService.method.getWorkflow.name}`;
/** An empty GetWorkflowResponse as a gRPC envelope. */
const EMPTY_RESPONSE = Buffer.from([0, 0, 0, 0, 0]);

const server = createServer();
server.on("stream", (stream, headers) => {
  if (headers[":path"] !== PATH) {
    stream.respond(
      { ":status": 200, "content-type": "application/grpc", "grpc-status": "12" },
      { endStream: true },
    );
    return;
  }
  const chunks: Buffer[] = [];
  stream.on("data", (chunk: Buffer) => chunks.push(chunk));
  stream.on("end", () => {
    fromBinary(GetWorkflowRequestSchema, Buffer.concat(chunks).subarray(5));
    stream.respond({ ":status": 200, "content-type": "application/grpc+proto" }, { waitForTrailers: true });
    stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
    stream.end(EMPTY_RESPONSE);
  });
});
server.listen(0, "127.0.0.1", () => {
  const address = server.address();
  process.send?.(typeof address === "object" && address !== null ? address.port : 0);
});
process.on("disconnect", () => process.exit(0));
