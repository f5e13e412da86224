/**
 * A bare Connect server (no Weft, no Redis) answering WorkflowService.GetWorkflow with an empty message:
 * the floor of one unary call on this machine. Sends its port to the parent.
 */
import { createServer } from "node:http2";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { WorkflowService } from "@weft/sdk/gen/weft/v1/workflow_service_pb.js";

const handler = connectNodeAdapter({
  routes: (router) => {
    router.rpc(WorkflowService.method.getWorkflow, () => ({}));
  },
});
const server = createServer(handler);
server.listen(0, "127.0.0.1", () => {
  const address = server.address();
  process.send?.(typeof address === "object" && address !== null ? address.port : 0);
});
process.on("disconnect", () => process.exit(0));
