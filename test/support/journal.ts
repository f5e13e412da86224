import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** One line of the test handlers' journal (see test/fixtures/handlers.ts). */
export interface JournalLine {
  event: string;
  runId: string;
  taskId: string;
  attempt: number;
  pid: number;
}

/**
 * The files a test's worker processes share with it: the journal their handlers append a line to at
 * each start (WEFT_TEST_JOURNAL), the flag whose presence makes `flaky` succeed (WEFT_TEST_FLAG) and
 * the gate that `gated` tasks wait for (WEFT_TEST_GATE).
 */
export class TestFiles {
  readonly dir = mkdtempSync(join(tmpdir(), "weft-journal-"));
  readonly journal = join(this.dir, "journal.jsonl");
  readonly flag = join(this.dir, "flag");
  readonly gate = join(this.dir, "gate");

  /** The environment of a worker process using these files. */
  get env(): NodeJS.ProcessEnv {
    return { WEFT_TEST_JOURNAL: this.journal, WEFT_TEST_FLAG: this.flag, WEFT_TEST_GATE: this.gate };
  }

  /** `gated` tasks return from now on. */
  openGate(): void {
    writeFileSync(this.gate, "open");
  }

  /** The downstream comes back: `flaky` succeeds from now on. */
  raiseFlag(): void {
    writeFileSync(this.flag, "up");
  }

  /** Every line so far. */
  lines(): JournalLine[] {
    if (!existsSync(this.journal)) return [];
    return readFileSync(this.journal, "utf8")
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => JSON.parse(l) as JournalLine);
  }

  /** How many times each task of a run started (its handler ran), by task id. */
  starts(runId: string): Record<string, number> {
    const out: Record<string, number> = {};
    for (const l of this.lines()) {
      if (l.runId === runId && l.event === "start") out[l.taskId] = (out[l.taskId] ?? 0) + 1;
    }
    return out;
  }
}
