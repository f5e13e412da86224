import { type Client, createClient, type Transport } from "@connectrpc/connect";
import { WorkerService } from "@weft/sdk/gen/weft/v1/worker_service_pb.js";

/** A client of the daemon's WorkerService. */
export type WorkerClient = Client<typeof WorkerService>;

/** Creates a WorkerService client on `transport`. */
export function createWorkerClient(transport: Transport): WorkerClient {
  return createClient(WorkerService, transport);
}
