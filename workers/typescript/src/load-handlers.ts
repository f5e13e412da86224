import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { TaskHandler, TaskHandlers } from "./handler.js";

/**
 * Imports a handlers module (relative paths resolve against the working directory) and finds its
 * handlers: an exported `handlers` object, else a default-exported object, else its function exports.
 */
export async function loadHandlers(path: string): Promise<TaskHandlers> {
  const module: Record<string, unknown> = await import(pathToFileURL(resolve(path)).href);
  for (const candidate of [module.handlers, module.default]) {
    if (isHandlerObject(candidate)) {
      return candidate;
    }
  }
  const functions = Object.entries(module).filter((entry): entry is [string, TaskHandler] => {
    return entry[0] !== "default" && typeof entry[1] === "function";
  });
  if (functions.length === 0) {
    throw new Error(`${path} exports no handlers: export a "handlers" object or handler functions`);
  }
  return Object.fromEntries(functions);
}

function isHandlerObject(value: unknown): value is TaskHandlers {
  return (
    typeof value === "object" &&
    value !== null &&
    Object.keys(value).length > 0 &&
    Object.values(value).every((v) => typeof v === "function")
  );
}
