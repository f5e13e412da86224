import pino, { type Logger } from "pino";
import pretty from "pino-pretty";
import type { LogLevel } from "../config.js";

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /**
   * pino level.
   * @defaultValue "info"
   */
  level?: LogLevel;
  /**
   * Human-readable lines instead of JSON.
   * @defaultValue true when stdout is a TTY
   */
  pretty?: boolean;
}

/** The daemon's logger: JSON lines on stdout, or pino-pretty output when stdout is a terminal. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? "info";
  if (options.pretty ?? process.stdout.isTTY === true) {
    return pino(
      { level, name: "weftd" },
      pretty({ colorize: true, sync: true, ignore: "pid,hostname,name" }),
    );
  }
  return pino({ level, name: "weftd" });
}
