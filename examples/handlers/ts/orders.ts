/** The data the ETL example passes between its steps, shared by its TypeScript handlers. */

/** An order as `extract` produces it. */
export interface Order {
  id: string;
  customer: string;
  amount_cents: number;
  currency: "EUR" | "USD" | "GBP";
}

/** An order converted to EUR by `transform`. */
export interface EurOrder {
  id: string;
  customer: string;
  eur_cents: number;
}

/** Exchange rates to EUR in basis points, so that every language computes the same integers. */
export const RATES_BP: Record<Order["currency"], number> = { EUR: 10_000, USD: 9_000, GBP: 11_500 };

const CUSTOMERS = ["acme", "globex", "initech", "umbrella"];
const CURRENCIES: Order["currency"][] = ["EUR", "USD", "GBP"];

/** The deterministic orders of a day: every 7th one has no amount (transform drops it). */
export function ordersOf(date: string, count: number): Order[] {
  const seed = [...date].reduce((s, c) => s + c.charCodeAt(0), 0);
  return Array.from({ length: count }, (_, i) => ({
    id: `${date}-${i + 1}`,
    customer: CUSTOMERS[(seed + i) % CUSTOMERS.length] ?? "acme",
    amount_cents: i % 7 === 6 ? 0 : (((seed + i * 37) % 90) + 10) * 100,
    currency: CURRENCIES[i % CURRENCIES.length] ?? "EUR",
  }));
}
