import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type MethodImpl } from "@connectrpc/connect";
import { WorkerService } from "@weft/sdk/gen/weft/v1/worker_service_pb.js";
import { WorkflowService } from "@weft/sdk/gen/weft/v1/workflow_service_pb.js";
import type { ServiceContext, WeftServices } from "./service-context.js";

/** Placeholder Weft services: every method fails UNIMPLEMENTED until the engine replaces this file. */
export async function createWeftServices(_ctx: ServiceContext): Promise<WeftServices> {
  return {
    register(router: ConnectRouter) {
      for (const service of [WorkflowService, WorkerService]) registerUnimplemented(router, service);
    },
    async close() {},
  };
}

function registerUnimplemented(router: ConnectRouter, service: DescService): void {
  for (const method of service.methods) {
    const fail = (): never => {
      throw new ConnectError(`${service.name}.${method.name} is not implemented yet`, Code.Unimplemented);
    };
    const impl =
      method.methodKind === "unary"
        ? fail
        : async function* () {
            yield* [];
            fail();
          };
    router.rpc(method, impl as MethodImpl<typeof method>);
  }
}
