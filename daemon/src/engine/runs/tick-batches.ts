/** A step script's reply for one step: an outcome, then its values. */
export type Reply = (string | number)[];

/** A step waiting to be sent with the others of its tick. */
interface PendingStep {
  args: (string | number)[];
  resolve: (reply: Reply) => void;
  reject: (err: unknown) => void;
}

/** Most steps in one batched script call, and most bytes of arguments: bounds how long it holds Redis. */
const BATCH_STEPS = 256;
const BATCH_BYTES = 1 << 20;

/** The steps of one script call, by run (a Map keeps the runs in the order they came). */
interface Batch {
  runs: Map<string, PendingStep[]>;
  /** The runs that one of their steps marks as recently touched (see RunSteps in run-steps.ts). */
  marked: Set<string>;
  steps: number;
  bytes: number;
}

function emptyBatch(): Batch {
  return { runs: new Map(), marked: new Set(), steps: 0, bytes: 0 };
}

/**
 * The calls of one batched step script asked for in the same tick go to Redis as
 * one script call per group at the end of the tick, once every microtask of the tick has
 * run: the steps of one batch RPC (the handovers of a poll, the completions of a
 * CompleteTasks call, the runs of a BatchTrigger) and those of concurrent calls
 * share it, grouped by run (ARGV: number of runs, then for each run the number
 * of its steps and their arguments). A batch that reaches {@link BATCH_STEPS}
 * steps or {@link BATCH_BYTES} bytes goes at once.
 *
 * A group is what one script call may touch: every run on one server; the runs of one slot on a
 * Redis Cluster, where a script's keys must share a slot (one call per slot and tick).
 */
export class TickBatches {
  /** The batches of this tick by group, in the order their first steps came. */
  private batches = new Map<number, Batch>();
  private scheduled = false;

  constructor(
    private readonly send: (
      runIds: string[],
      args: (string | number)[],
      marked: string[],
    ) => Promise<readonly unknown[]>,
    /** One reply per step of a run, in order, from the run's entry of the script's reply. */
    private readonly split: (reply: Reply) => Reply[],
    /** The group of a run: the runs of one script call share it (see the class comment). */
    private readonly groupOf: (runId: string) => number = () => 0,
    /**
     * Writes what must be in Redis before the calls of a tick go (their runs' marks and index
     * entries, on a Cluster), in one go for all of them; a failure fails their steps, unsent.
     */
    private readonly prepare?: (batches: { runIds: string[]; marked: string[] }[]) => Promise<unknown>,
  ) {}

  /** Adds a step of `runId`; `mark`: the step may leave a follow-up, so its run is marked. */
  add(runId: string, args: (string | number)[], mark: boolean): Promise<Reply> {
    return new Promise((resolve, reject) => {
      let bytes = 0;
      for (const arg of args) bytes += typeof arg === "string" ? arg.length : 8;
      const group = this.groupOf(runId);
      let batch = this.batches.get(group);
      if (batch === undefined) {
        batch = emptyBatch();
        this.batches.set(group, batch);
      } else if (batch.steps >= BATCH_STEPS || (batch.steps > 0 && batch.bytes + bytes > BATCH_BYTES)) {
        this.sendBatches([batch]);
        batch = emptyBatch();
        this.batches.set(group, batch);
      }
      let steps = batch.runs.get(runId);
      if (steps === undefined) {
        steps = [];
        batch.runs.set(runId, steps);
      }
      steps.push({ args, resolve, reject });
      if (mark) batch.marked.add(runId);
      batch.steps++;
      batch.bytes += bytes;
      if (!this.scheduled) {
        this.scheduled = true;
        process.nextTick(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.scheduled = false;
    const { batches } = this;
    this.batches = new Map();
    this.sendBatches([...batches.values()].filter((batch) => batch.steps > 0));
  }

  private sendBatches(batches: Batch[]): void {
    const { prepare } = this;
    if (prepare === undefined) {
      for (const batch of batches) this.sendBatch(batch);
      return;
    }
    prepare(batches.map((b) => ({ runIds: [...b.runs.keys()], marked: [...b.marked] }))).then(
      () => {
        for (const batch of batches) this.sendBatch(batch);
      },
      (err: unknown) => {
        for (const { runs } of batches)
          for (const steps of runs.values()) for (const step of steps) step.reject(err);
      },
    );
  }

  private sendBatch({ runs, marked }: Batch): void {
    const args: (string | number)[] = [runs.size];
    for (const steps of runs.values()) {
      args.push(steps.length);
      for (const step of steps) for (const arg of step.args) args.push(arg);
    }
    this.send([...runs.keys()], args, [...marked]).then(
      (reply) => {
        let r = 0;
        for (const steps of runs.values()) {
          const replies = this.split(normalize(reply[r++]));
          steps.forEach((step, i) => {
            step.resolve(replies[i] ?? []);
          });
        }
      },
      (err: unknown) => {
        for (const steps of runs.values()) for (const step of steps) step.reject(err);
      },
    );
  }
}

/** A reply as a list: a step that answers a bare number (TRIGGER's 1 or 0) becomes [number]. */
export function normalize(value: unknown): Reply {
  if (Array.isArray(value)) return value as Reply;
  return [value as number];
}
