import { Code, RunCancelledError, RunFailedError, WeftError, WorkflowSpecError } from "@weft/sdk";

/** The exit codes of `weft`, for scripts. */
export const ExitCode = {
  /** The command did what was asked (a watched run succeeded). */
  Ok: 0,
  /** A run failed, timed out or was cancelled, or something unexpected went wrong. */
  Failed: 1,
  /** The command line, a file or a value given to the server was wrong. */
  Usage: 2,
  /** The workflow or run does not exist. */
  NotFound: 3,
  /** weftd could not be reached. */
  Unavailable: 4,
  /** Stopped by Ctrl-C. */
  Interrupted: 130,
} as const;

/** A wrong command line: printed with the command's usage hint, exit code 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
}

/** The exit code for an error. */
export function exitCodeOf(err: unknown): number {
  if (err instanceof UsageError || err instanceof WorkflowSpecError) return ExitCode.Usage;
  if (err instanceof RunFailedError || err instanceof RunCancelledError) return ExitCode.Failed;
  if (err instanceof WeftError) {
    switch (err.code) {
      case Code.NotFound:
        return ExitCode.NotFound;
      case Code.Unavailable:
      case Code.DeadlineExceeded:
        return ExitCode.Unavailable;
      case Code.InvalidArgument:
        return ExitCode.Usage;
      default:
        return ExitCode.Failed;
    }
  }
  if ((err as NodeJS.ErrnoException | undefined)?.code === "ENOENT") return ExitCode.Usage;
  return ExitCode.Failed;
}

/** One readable line for an error. */
export function errorLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.replace(/\s*\n\s*/g, " ").trim();
}
