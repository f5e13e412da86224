/** Where a command writes, and what it knows about the terminal. */
export interface Io {
  /** Writes to standard output. */
  out(text: string): void;
  /** Writes to standard error. */
  err(text: string): void;
  /** Whether standard output is a terminal (the live view is drawn only then). */
  readonly isTTY: boolean;
  /** Width of the terminal, in columns. */
  readonly columns: number;
  /** Whether colours are wanted (a terminal, and NO_COLOR unset). */
  readonly color: boolean;
  /** The environment. */
  readonly env: NodeJS.ProcessEnv;
}

/** The process's own standard streams. */
export function processIo(): Io {
  const isTTY = process.stdout.isTTY === true;
  return {
    out: (text) => process.stdout.write(text),
    err: (text) => process.stderr.write(text),
    isTTY,
    get columns() {
      return process.stdout.columns ?? 80;
    },
    color: isTTY && (process.env.NO_COLOR ?? "") === "",
    env: process.env,
  };
}
