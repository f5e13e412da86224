import { type Logger, pino } from "pino";

/**
 * The logger a worker uses when given none: JSON lines on stdout at `WEFT_LOG_LEVEL` (default info),
 * written synchronously so that no line is lost when the process exits right after shutdown.
 */
export function createDefaultLogger(): Logger {
  return pino(
    { name: "weft-worker", level: process.env.WEFT_LOG_LEVEL ?? "info" },
    pino.destination({ dest: 1, sync: true }),
  );
}
