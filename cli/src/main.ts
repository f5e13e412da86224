// The `weft` command: `node --import tsx/esm cli/src/main.ts <command> …` (`pnpm weft …` in the checkout).
import { runCli } from "./cli.js";
import { processIo } from "./io.js";

// `weft watch … | head -3`: a reader that went away ends the command quietly.
process.stdout.on("error", (err: NodeJS.ErrnoException) => {
  if (err.code === "EPIPE") process.exit(0);
  throw err;
});

const controller = new AbortController();
let interrupts = 0;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    interrupts++;
    // A second Ctrl-C while a command is stopping ends the process at once.
    if (interrupts > 1) process.exit(130);
    controller.abort(new Error(`${signal} received`));
  });
}

const code = await runCli(process.argv.slice(2), processIo(), controller.signal);
// Exit explicitly: an idle HTTP/2 session or a timer must not keep the command alive.
process.exitCode = code;
process.stdout.write("", () => process.exit(code));
