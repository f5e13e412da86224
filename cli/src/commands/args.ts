import { UsageError } from "../exit-codes.js";

/** The one positional argument a command takes. */
export function oneArg(args: string[], name: string): string {
  if (args.length === 0 || args[0] === "") throw new UsageError(`${name} is required`);
  if (args.length > 1) throw new UsageError(`unexpected argument "${args[1]}"`);
  return args[0] as string;
}

/** Parses a whole-number flag. */
export function positiveInt(text: string, flag: string): number {
  const n = Number(text);
  if (text.trim() === "" || !Number.isInteger(n) || n < 0) {
    throw new UsageError(`${flag} must be a whole number, got "${text}"`);
  }
  return n;
}
