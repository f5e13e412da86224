import type { MessageInitShape } from "@bufbuild/protobuf";
import { type CallOptions, type Client, Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema } from "./gen/google/rpc/error_details_pb.js";
import type {
  TriggerRequestSchema,
  TriggerResponse,
  WorkflowService,
} from "./gen/weft/v1/workflow_service_pb.js";

type TriggerInit = MessageInitShape<typeof TriggerRequestSchema> & { workflow: string; version: number };

/** Most runs weftd starts in one BatchTrigger call. */
export const MAX_BATCH = 1000;

/** How {@link TriggerBatcher} groups calls. */
export interface TriggerBatchSettings {
  /** How long the first call of a batch waits for others, in ms; 0: until the event loop's next turn. */
  windowMs: number;
  /** Most calls in one batch (1 to 1,000). */
  maxSize: number;
}

interface Waiting {
  req: TriggerInit;
  resolve: (res: TriggerResponse) => void;
  /** Gets the raw error: the caller maps it as it maps Trigger's. */
  reject: (err: unknown) => void;
}

/** "requests[3].workflow: …" or "requests[3]": the request a BatchTrigger error names. */
const NAMED_REQUEST = /^requests\[(\d+)\]/;

/**
 * Groups the trigger() calls of one client made within a short window into BatchTrigger calls, each
 * call keeping what Trigger would have answered it: its run, or its own error. BatchTrigger refuses
 * a whole call for one bad request (every request is checked before any run starts), so a batch
 * that fails for requests it names sends those alone, as Trigger calls (their callers get Trigger's
 * own answer), and the others again as a batch; one that fails for its size (too many tasks, too
 * large an answer) is split in halves. An error of the call itself (weftd unreachable, a deadline)
 * goes to each of its callers, as their own Trigger calls would have failed. A lone call is a
 * Trigger call.
 */
export class TriggerBatcher {
  private waiting: Waiting[] = [];
  private timer: NodeJS.Timeout | NodeJS.Immediate | undefined;

  constructor(
    private readonly rpc: Client<typeof WorkflowService>,
    private readonly options: CallOptions,
    private readonly settings: TriggerBatchSettings,
  ) {}

  /** Starts a run as Trigger would, in a batch with the calls made around the same time. */
  trigger(req: TriggerInit): Promise<TriggerResponse> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ req, resolve, reject });
      if (this.waiting.length >= this.settings.maxSize) this.flush();
      else if (this.timer === undefined) {
        this.timer =
          this.settings.windowMs > 0
            ? setTimeout(() => this.flush(), this.settings.windowMs)
            : setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer as NodeJS.Timeout);
      clearImmediate(this.timer as NodeJS.Immediate);
      this.timer = undefined;
    }
    const batch = this.waiting;
    this.waiting = [];
    if (batch.length > 0) void this.send(batch);
  }

  private async send(batch: Waiting[]): Promise<void> {
    if (batch.length === 1) {
      const [one] = batch as [Waiting];
      try {
        one.resolve(await this.rpc.trigger(one.req, this.options));
      } catch (err) {
        one.reject(err);
      }
      return;
    }
    let responses: TriggerResponse[];
    try {
      responses = (await this.rpc.batchTrigger({ requests: batch.map((w) => w.req) }, this.options))
        .responses;
    } catch (err) {
      await this.recover(batch, ConnectError.from(err));
      return;
    }
    batch.forEach((w, i) => {
      const res = responses[i];
      if (res !== undefined) w.resolve(res);
      else
        w.reject(
          new ConnectError(`weftd answered ${responses.length} of ${batch.length} triggers`, Code.Internal),
        );
    });
  }

  /** After a batch failed: each caller gets its own answer (see the class). */
  private async recover(batch: Waiting[], error: ConnectError): Promise<void> {
    const named = requestsNamed(error, batch.length);
    const perRequest =
      error.code === Code.InvalidArgument ||
      error.code === Code.NotFound ||
      error.code === Code.ResourceExhausted;
    if (perRequest && named.size > 0) {
      if (error.code === Code.NotFound) {
        // A workflow (or version) that does not exist: every request of it would fail the same way.
        const missing = new Set([...named].map((i) => key(batch[i]?.req)));
        batch.forEach((w, i) => {
          if (missing.has(key(w.req))) named.add(i);
        });
      }
      const alone = batch.filter((_, i) => named.has(i));
      const rest = batch.filter((_, i) => !named.has(i));
      await Promise.all([...alone.map((w) => this.send([w])), rest.length > 0 ? this.send(rest) : undefined]);
      return;
    }
    if (error.code === Code.ResourceExhausted) {
      // The batch as a whole is too large (its tasks together, or its answer): halves.
      const half = Math.ceil(batch.length / 2);
      await Promise.all([this.send(batch.slice(0, half)), this.send(batch.slice(half))]);
      return;
    }
    for (const w of batch) w.reject(error);
  }
}

function key(req: TriggerInit | undefined): string {
  return `${req?.workflow}@${req?.version}`;
}

/** The requests of a batch of `size` that a BatchTrigger error names, by field violation or message. */
function requestsNamed(error: ConnectError, size: number): Set<number> {
  const named = new Set<number>();
  const add = (text: string) => {
    const i = Number(NAMED_REQUEST.exec(text)?.[1]);
    if (Number.isInteger(i) && i >= 0 && i < size) named.add(i);
  };
  for (const detail of error.findDetails(BadRequestSchema)) {
    for (const v of detail.fieldViolations) add(v.field);
  }
  for (const part of error.rawMessage.split("; ")) add(part);
  return named;
}
