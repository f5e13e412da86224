import type { Run } from "@weft/sdk/gen/weft/v1/run_pb.js";
import type { RunOps, TriggerItem } from "../runs/index.js";

/** Most runs started by one call. */
const MAX_BATCH = 500;

interface Pending {
  item: TriggerItem;
  resolve: (result: { run: Run; created: boolean }) => void;
  reject: (err: unknown) => void;
}

/**
 * Starts the runs that the fire steps of one tick ask for together: one `triggerMany` call, whose
 * first tasks go to BullMQ in one call per queue, instead of one of each per run (10,000 schedules
 * firing at the same second start their runs in batches). `triggerMany` refuses a whole batch for
 * one bad item (a workflow gone, an input over the limit): then each run is started alone, so the
 * others start and the bad one gets its own error.
 */
export class TriggerBatch {
  private pending: Pending[] = [];

  constructor(private readonly runs: RunOps) {}

  /** Starts one run (with the others of this tick). */
  start(item: TriggerItem): Promise<{ run: Run; created: boolean }> {
    return new Promise((resolve, reject) => {
      if (this.pending.length === 0) setImmediate(() => void this.flush());
      this.pending.push({ item, resolve, reject });
    });
  }

  private async flush(): Promise<void> {
    const all = this.pending;
    this.pending = [];
    for (let i = 0; i < all.length; i += MAX_BATCH) {
      const batch = all.slice(i, i + MAX_BATCH);
      try {
        const results = await this.runs.triggerMany(
          batch.map((p) => p.item),
          (_, field) => `spec.${field}`,
        );
        for (const [j, p] of batch.entries()) p.resolve(results[j] as { run: Run; created: boolean });
      } catch (err) {
        if (batch.length === 1) {
          batch[0]?.reject(err);
          continue;
        }
        await Promise.all(
          batch.map(async (p) => {
            try {
              const [result] = await this.runs.triggerMany([p.item], (_, field) => `spec.${field}`);
              p.resolve(result as { run: Run; created: boolean });
            } catch (one) {
              p.reject(one);
            }
          }),
        );
      }
    }
  }
}
