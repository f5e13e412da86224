import { fromValue, type Run, RunStatus, runOutcomeError, TaskStatus } from "@weft/sdk";
import type { CommandContext } from "./command.js";
import { eventJson } from "./event-json.js";
import { ExitCode, errorLine } from "./exit-codes.js";
import { LiveView } from "./live-view.js";
import { RunState } from "./run-state.js";

/**
 * Follows a run until it finishes: on a terminal a live view, otherwise (or with --json) one JSON
 * event per line. Resolves with 0 when the run succeeded, 1 when it failed, timed out or was
 * cancelled, 130 when stopped by Ctrl-C (the run goes on).
 */
export async function followRun(ctx: CommandContext, runId: string): Promise<number> {
  const client = ctx.client();
  const { io, signal } = ctx;
  const live = io.isTTY && ctx.options.json !== true;
  const snapshot = await client.getRun(runId);
  let final: Run;
  try {
    if (live) {
      const state = new RunState(snapshot);
      const view = new LiveView(io, state);
      view.start();
      try {
        if (!state.finished) {
          const events = client.watch(runId, {
            afterSequence: snapshot.lastSequence,
            signal,
            onReconnect: (r) => {
              state.reconnecting = `connection lost (${r.error.rawMessage}); reconnecting, attempt ${r.attempt}…`;
              view.draw();
            },
          });
          for await (const e of events) {
            state.apply(e);
            view.draw();
          }
        }
      } finally {
        view.stop();
      }
    } else {
      for await (const e of client.watch(runId, { signal })) io.out(`${JSON.stringify(eventJson(e))}\n`);
    }
    final = await client.getRun(runId);
  } catch (err) {
    if (!signal.aborted) throw err;
    io.err(`weft: stopped watching; run ${runId} goes on (weft watch ${runId})\n`);
    return ExitCode.Interrupted;
  }
  if (live) io.out(summary(final));
  if (final.status === RunStatus.SUCCEEDED) return ExitCode.Ok;
  io.err(`weft: ${errorLine(runOutcomeError(final))}\n`);
  return ExitCode.Failed;
}

/** What the live view prints under its last frame: the output, or what went wrong. */
function summary(run: Run): string {
  if (run.status === RunStatus.SUCCEEDED)
    return `output:\n${JSON.stringify(fromValue(run.output), null, 2)}\n`;
  const lines = [];
  for (const t of run.tasks.filter((x) => x.status === TaskStatus.FAILED)) {
    const type = t.error?.type === "" || t.error === undefined ? "" : `${t.error.type}: `;
    lines.push(
      `${t.taskId} failed (attempt ${t.attempt}/${t.maxAttempts}): ${type}${t.error?.message ?? ""}`,
    );
    if (t.error?.details) lines.push(...t.error.details.split("\n").map((l) => `    ${l}`));
  }
  return lines.map((l) => `${l}\n`).join("");
}
