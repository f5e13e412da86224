import { type Client, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { Run } from "@weft/sdk/gen/weft/v1/run_pb.js";
import { ScheduleService } from "@weft/sdk/gen/weft/v1/schedule_service_pb.js";
import type { WeftClients } from "./weft.js";

/** A client of weft.v1.ScheduleService over gRPC for a daemon at `address` ("127.0.0.1:port"). */
export function scheduleClient(
  address: string,
  interceptors: Interceptor[] = [],
): Client<typeof ScheduleService> {
  return createClient(ScheduleService, createGrpcTransport({ baseUrl: `http://${address}`, interceptors }));
}

/** Every run a schedule started (ListRuns by schedule_id, all pages), newest first. */
export async function runsOfSchedule(c: WeftClients, scheduleId: string): Promise<Run[]> {
  const runs: Run[] = [];
  let pageToken = "";
  do {
    const page = await c.workflows.listRuns({ scheduleId, pageSize: 1000, pageToken });
    runs.push(...page.runs);
    pageToken = page.nextPageToken;
  } while (pageToken !== "");
  return runs;
}

/** Milliseconds of a Timestamp (0 when unset). */
export function msOf(t: { seconds: bigint; nanos: number } | undefined): number {
  return t === undefined ? 0 : Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6);
}

/** A Timestamp init of `ms`. */
export function at(ms: number): { seconds: bigint; nanos: number } {
  return { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1e6 };
}
