/**
 * TypeScript handlers of the examples and of the README's tour (queue "ts"):
 * `node --import tsx/esm workers/typescript/src/bin.ts --address 127.0.0.1:7233 --queue ts --handlers examples/handlers/ts/handlers.ts`
 */
import type { JsonObject, JsonValue, TaskContext, TaskHandlers } from "@weft/worker";
import { ordersOf } from "./orders.js";

interface EtlInput {
  date?: string;
  orders?: number;
}

/** ETL step 1: the orders of the run input's day (`{ date, orders }`, both optional). */
async function extract(_input: JsonValue, ctx: TaskContext): Promise<JsonValue> {
  const run = (ctx.runInput ?? {}) as EtlInput;
  const date = run.date ?? "2024-05-01";
  const orders = ordersOf(date, run.orders ?? 12);
  ctx.logger.info({ count: orders.length }, "extracted orders");
  return { date, orders } as unknown as JsonValue;
}

/** ETL step 4: the report of the day from the totals per customer. */
async function load(_input: JsonValue, ctx: TaskContext): Promise<JsonValue> {
  const agg = ctx.parentOutputs.aggregate as { date: string; totals: Record<string, number>; count: number };
  const ranked = Object.entries(agg.totals).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  const total = ranked.reduce((s, [, cents]) => s + cents, 0);
  return {
    date: agg.date,
    orders: agg.count,
    customers: ranked.length,
    total_eur: (total / 100).toFixed(2),
    top_customer: ranked[0]?.[0] ?? null,
  };
}

/** Fan-out step 1: the words of the run input's `text`. */
async function split(_input: JsonValue, ctx: TaskContext): Promise<JsonValue> {
  const text = ((ctx.runInput ?? {}) as { text?: string }).text ?? "to be or not to be that is the question";
  return text
    .toLowerCase()
    .split(/[^a-z0-9']+/)
    .filter((w) => w !== "");
}

/** Fan-out step 2 (one per shard): counts the words whose index falls in its shard. */
async function countWords(input: JsonValue, ctx: TaskContext): Promise<JsonValue> {
  const { shard, shards } = input as { shard: number; shards: number };
  const words = (ctx.parentOutputs.split ?? []) as string[];
  const counts: JsonObject = {};
  words.forEach((w, i) => {
    if (i % shards === shard) counts[w] = Number(counts[w] ?? 0) + 1;
  });
  return counts;
}

/** Fan-in: adds the shards' counts up. */
async function merge(_input: JsonValue, ctx: TaskContext): Promise<JsonValue> {
  const totals: Record<string, number> = {};
  for (const counts of Object.values(ctx.parentOutputs)) {
    for (const [word, n] of Object.entries(counts as Record<string, number>))
      totals[word] = (totals[word] ?? 0) + n;
  }
  const ranked = Object.entries(totals).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  return {
    words: ranked.reduce((s, [, n]) => s + n, 0),
    unique: ranked.length,
    top: ranked.slice(0, 3).map(([word, n]) => ({ word, n })),
  };
}

/** The README tour's handler: what the task was given (its input, the run input, its parents' outputs). */
async function echo(input: JsonValue, ctx: TaskContext): Promise<JsonValue> {
  return { task: ctx.taskId, input, runInput: ctx.runInput, parents: { ...ctx.parentOutputs } };
}

/** The handlers by the names the example workflows (and the README's tour) use. */
export const handlers: TaskHandlers = { extract, load, split, "count-words": countWords, merge, echo };
