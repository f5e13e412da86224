import type { MessageInitShape } from "@bufbuild/protobuf";
import { type Client, ConnectError } from "@connectrpc/connect";
import type { RunEvent } from "@weft/sdk/gen/weft/v1/run_pb.js";
import type {
  WatchRunsRejection,
  WatchRunsRequestSchema,
  WatchRunsResponse,
} from "@weft/sdk/gen/weft/v1/run_watch_pb.js";
import type { WorkflowService } from "@weft/sdk/gen/weft/v1/workflow_service_pb.js";
import { waitFor } from "./wait-for.js";

type Request = MessageInitShape<typeof WatchRunsRequestSchema>;

/** A request stream the test writes to as it goes. */
class Requests implements AsyncIterable<Request> {
  private readonly queue: Request[] = [];
  private waiter: (() => void) | undefined;
  private ended = false;

  push(req: Request): void {
    this.queue.push(req);
    this.waiter?.();
  }

  end(): void {
    this.ended = true;
    this.waiter?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Request> {
    for (;;) {
      const next = this.queue.shift();
      if (next !== undefined) {
        yield next;
        continue;
      }
      if (this.ended) return;
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
      });
      this.waiter = undefined;
    }
  }
}

/** An open WatchRuns stream: what it received so far, and how it ended. */
export interface RunsWatchCall {
  send(req: Request): void;
  /** Half-closes the request side. */
  end(): void;
  cancel(): void;
  readonly messages: WatchRunsResponse[];
  readonly events: RunEvent[];
  readonly rejections: WatchRunsRejection[];
  /** Settles when the stream ends: undefined when it ended OK, else its error. */
  readonly done: Promise<ConnectError | undefined>;
  /** Waits until `predicate` holds for what arrived, or fails saying what did. */
  until(what: string, predicate: () => boolean, timeoutMs?: number): Promise<void>;
}

/** Opens WatchRuns on `client`, sending `first` as its first message. */
export function openRunsWatch(client: Client<typeof WorkflowService>, first: Request = {}): RunsWatchCall {
  const requests = new Requests();
  requests.push(first);
  const abort = new AbortController();
  const messages: WatchRunsResponse[] = [];
  const events: RunEvent[] = [];
  const rejections: WatchRunsRejection[] = [];
  const done = (async () => {
    try {
      for await (const res of client.watchRuns(requests, { signal: abort.signal })) {
        messages.push(res);
        events.push(...res.events);
        rejections.push(...res.rejections);
      }
      return undefined;
    } catch (err) {
      return ConnectError.from(err);
    }
  })();
  return {
    send: (req) => requests.push(req),
    end: () => requests.end(),
    cancel: () => abort.abort(),
    messages,
    events,
    rejections,
    done,
    async until(what, predicate, timeoutMs = 10_000) {
      try {
        await waitFor(() => predicate(), { message: what, timeoutMs });
      } catch (err) {
        const seen = events.map((e) => `${e.runId.slice(-6)}#${e.sequence}`).join(" ");
        const refused = rejections.map((r) => `${r.runId || r.workflow} ${r.code} ${r.message}`).join("; ");
        throw new Error(`${(err as Error).message}; events: ${seen}; rejections: ${refused}`);
      }
    },
  };
}
