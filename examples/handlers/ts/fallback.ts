/**
 * TypeScript stand-ins for the ETL steps that run in Python (`transform`, queue "py") and Go
 * (`aggregate`, queue "go"), for machines without those runtimes: `weft dev` starts a TypeScript
 * worker with this module on each queue whose own runtime is missing. Same results, integer math.
 */
import type { JsonValue, TaskContext, TaskHandlers } from "@weft/worker";
import { type EurOrder, type Order, RATES_BP } from "./orders.js";

/** ETL step 2 (Python's): drops orders without an amount and converts the rest to EUR cents. */
async function transform(_input: JsonValue, ctx: TaskContext): Promise<JsonValue> {
  const { date, orders } = ctx.parentOutputs.extract as unknown as { date: string; orders: Order[] };
  const kept = orders.filter((o) => o.amount_cents > 0);
  const converted: EurOrder[] = kept.map((o) => ({
    id: o.id,
    customer: o.customer,
    eur_cents: Math.floor((o.amount_cents * RATES_BP[o.currency]) / 10_000),
  }));
  return { date, orders: converted, dropped: orders.length - kept.length } as unknown as JsonValue;
}

/** ETL step 3 (Go's): totals per customer. */
async function aggregate(_input: JsonValue, ctx: TaskContext): Promise<JsonValue> {
  const { date, orders } = ctx.parentOutputs.transform as unknown as { date: string; orders: EurOrder[] };
  const totals: Record<string, number> = {};
  for (const o of orders) totals[o.customer] = (totals[o.customer] ?? 0) + o.eur_cents;
  const sorted = Object.fromEntries(Object.entries(totals).sort(([a], [b]) => a.localeCompare(b)));
  return { date, totals: sorted, count: orders.length };
}

/** The fallback handlers by the names etl.yaml uses. */
export const handlers: TaskHandlers = { transform, aggregate };
