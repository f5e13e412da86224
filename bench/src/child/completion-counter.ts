import type { FromChild, ToChild } from "./protocol.js";

/**
 * Counts completions in a child and tells the parent when the expected number happened. Completions
 * before the first `expect` (or after the target) are ignored.
 */
export class CompletionCounter {
  private target = 0;
  private count = 0;
  private first = 0;

  /** Arms the counter for `n` completions. */
  expect(n: number): void {
    this.target = n;
    this.count = 0;
    this.first = 0;
  }

  /** Records one completion. */
  completed(): void {
    if (this.target === 0) return;
    const now = Date.now();
    if (this.count === 0) this.first = now;
    this.count++;
    if (this.count === this.target) {
      this.target = 0;
      send({ t: "done", first: this.first, last: now });
    }
  }
}

/** Sends a message to the parent. */
export function send(message: FromChild): void {
  process.send?.(message);
}

/** Handles the parent's messages. */
export function onParentMessage(handler: (message: ToChild) => void): void {
  process.on("message", (message) => handler(message as ToChild));
  // The parent is gone: nothing left to do.
  process.on("disconnect", () => process.exit(0));
}
