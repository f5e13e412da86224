// @weft/cli: the `weft` command line, runnable in-process (for tools and tests).

export { COMMANDS, DEFAULT_ADDRESS, runCli } from "./cli.js";
export { type Command, type CommandContext, GLOBAL_HELP } from "./command.js";
export { ExitCode, exitCodeOf, UsageError } from "./exit-codes.js";
export { type Io, processIo } from "./io.js";
