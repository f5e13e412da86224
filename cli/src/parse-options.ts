import { parseArgs } from "node:util";
import { UsageError } from "./exit-codes.js";

/** Options in node:util parseArgs form, by long name. */
export type OptionSpecs = Record<string, { type: "string" | "boolean"; short?: string }>;

/** What {@link parseOptions} found on the line. */
export interface ParsedLine {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
}

/**
 * Parses a command's arguments against its options. Every mistake is a {@link UsageError} in our
 * own words (`unknown option --limt (did you mean --limit?)`, `--limit needs a value`): Node's
 * parseArgs messages talk about its own syntax, not about the command. A string option takes the
 * next word as its value even when that starts with a dash (`--limit -3`, `--input -1`), unless the
 * word is one of the command's options, so a value's own check names what is wrong with it.
 */
export function parseOptions(args: string[], options: OptionSpecs): ParsedLine {
  const byShort = new Map<string, string>();
  for (const [name, spec] of Object.entries(options)) if (spec.short) byShort.set(spec.short, name);
  const known = (word: string): string | undefined => {
    if (word.startsWith("--")) {
      const name = word.slice(2).split("=")[0] ?? "";
      return name in options ? name : undefined;
    }
    if (/^-[^-]$/.test(word)) return byShort.get(word.slice(1));
    return undefined;
  };
  const words: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const word = args[i] as string;
    if (word === "--") {
      words.push(...args.slice(i));
      break;
    }
    if (word.startsWith("-") && word !== "-") {
      const name = known(word);
      if (name === undefined) throw new UsageError(unknownOption(word, options));
      const spec = options[name] as OptionSpecs[string];
      const inline = word.includes("=") && word.startsWith("--");
      if (spec.type === "boolean") {
        if (inline) throw new UsageError(`--${name} takes no value`);
        words.push(word);
        continue;
      }
      if (inline) {
        words.push(word);
        continue;
      }
      const next = args[i + 1];
      if (next === undefined || next === "--" || known(next) !== undefined) {
        throw new UsageError(`--${name} needs a value`);
      }
      words.push(`--${name}=${next}`);
      i++;
      continue;
    }
    words.push(word);
  }
  const parsed = parseArgs({ args: words, options, allowPositionals: true, strict: true });
  return { values: parsed.values as ParsedLine["values"], positionals: parsed.positionals };
}

/** `unknown option --limt (did you mean --limit?)`. */
function unknownOption(word: string, options: OptionSpecs): string {
  const given = word.split("=")[0] as string;
  const name = given.replace(/^-+/, "");
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const candidate of Object.keys(options)) {
    const d = distance(name, candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  const close = best !== undefined && bestDistance <= Math.max(1, Math.floor(name.length / 3));
  return `unknown option ${given}${close ? ` (did you mean --${best}?)` : ""}`;
}

/** Edit distance (insertions, deletions, substitutions) between two short words. */
function distance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      next[j] = Math.min((row[j] as number) + 1, (next[j - 1] as number) + 1, (row[j - 1] as number) + cost);
    }
    row = next;
  }
  return row[b.length] as number;
}
