import { EventEmitter } from "node:events";
import { type Logger, pino } from "pino";
import { within } from "./async.js";

/** One parsed pino line. */
export type LogLine = Record<string, unknown> & { level: number; msg: string };

/** Pino level numbers by name. */
export const levels = { debug: 20, info: 30, warn: 40, error: 50 } as const;

/** A debug-level pino logger that keeps its lines in memory for assertions. */
export class LogCapture {
  readonly lines: LogLine[] = [];
  readonly logger: Logger;
  private readonly changes = new EventEmitter();

  constructor() {
    this.changes.setMaxListeners(0);
    this.logger = pino(
      { level: "debug" },
      {
        write: (line: string) => {
          this.lines.push(JSON.parse(line) as LogLine);
          this.changes.emit("line");
        },
      },
    );
  }

  /** Lines with message `msg`. */
  withMessage(msg: string): LogLine[] {
    return this.lines.filter((line) => line.msg === msg);
  }

  /** Waits until at least `count` lines with message `msg` were logged. */
  async waitForMessage(msg: string, count = 1, timeoutMs = 3_000): Promise<LogLine[]> {
    let onLine: (() => void) | undefined;
    const seen = new Promise<LogLine[]>((resolve) => {
      onLine = () => {
        const matching = this.withMessage(msg);
        if (matching.length >= count) {
          resolve(matching);
        }
      };
      this.changes.on("line", onLine);
      onLine();
    });
    try {
      return await within(seen, `${count} log line(s) "${msg}"`, timeoutMs);
    } finally {
      if (onLine) {
        this.changes.off("line", onLine);
      }
    }
  }
}
