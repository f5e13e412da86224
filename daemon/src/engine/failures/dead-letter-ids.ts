import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { DeadLetterFilter } from "@weft/sdk/gen/weft/v1/failure_service_pb.js";
import { invalidArgument, isRunId } from "../shared/index.js";
import type { StoredEntry } from "./dead-letter-index.js";

// Dead letters' ids, filters and page tokens.

/** A dead letter's id, parsed. */
export interface EntryId {
  runId: string;
  taskId: string;
  /** The run's resume count when the task failed. */
  gen: number;
}

/** Parses an entry id "<runId>/<taskId>/<resume count>"; INVALID_ARGUMENT naming `field` when malformed. */
export function parseEntryId(id: string, field = "id"): EntryId {
  if (id === "") throw invalidArgument([{ field, description: "is required" }]);
  const m = /^([0-9a-f-]{36})\/([A-Za-z0-9_.-]{1,128})\/(0|[1-9][0-9]{0,8})$/.exec(id);
  if (m === null || !isRunId(m[1] as string)) {
    throw invalidArgument([
      {
        field,
        description: `"${id.slice(0, 80)}" is not a dead-letter id (<run id>/<task id>/<resume count>)`,
      },
    ]);
  }
  return { runId: m[1] as string, taskId: m[2] as string, gen: Number(m[3]) };
}

/** An entry id as text. */
export function formatEntryId(id: EntryId): string {
  return `${id.runId}/${id.taskId}/${id.gen}`;
}

/** NOT_FOUND for an entry id. */
export function entryNotFound(id: string): ConnectError {
  return new ConnectError(`dead letter "${id}" not found`, Code.NotFound);
}

/** The filter of a listing, in the daemon's terms. */
export interface EntryFilter {
  queue: string;
  workflow: string;
  errorType: string;
  /** Epoch ms; undefined: unbounded. */
  since: number | undefined;
  until: number | undefined;
}

/** A filter from its proto message (fields already checked). */
export function entryFilterOf(f: DeadLetterFilter | undefined): EntryFilter {
  return {
    queue: f?.queue ?? "",
    workflow: f?.workflow ?? "",
    errorType: f?.errorType ?? "",
    since: f?.since === undefined ? undefined : timestampMs(f.since),
    until: f?.until === undefined ? undefined : timestampMs(f.until),
  };
}

/** Where a scan of the indexes is: the last member seen and its score. */
export interface ScanCursor {
  score: number;
  member: string;
}

/** A page token from a cursor. */
export function encodeCursor(c: ScanCursor): string {
  return Buffer.from(JSON.stringify([c.score, c.member])).toString("base64url");
}

/** A cursor from a page token; INVALID_ARGUMENT when it is not one. */
export function decodeCursor(token: string, field = "page_token"): ScanCursor | undefined {
  if (token === "") return undefined;
  try {
    const [score, member] = JSON.parse(Buffer.from(token, "base64url").toString()) as [unknown, unknown];
    if (typeof score === "number" && typeof member === "string" && member.includes("/"))
      return { score, member };
  } catch {
    // reported below
  }
  throw invalidArgument([{ field, description: "is not a token returned by this call" }]);
}

/** What an entry is matched on: where it is listed, and when it failed. */
export interface EntryFields {
  stored: StoredEntry;
  workflow: string;
}

/** Whether an entry matches every field of a filter. */
export function matches(filter: EntryFilter, e: EntryFields): boolean {
  if (filter.queue !== "" && e.stored.q !== filter.queue) return false;
  if (filter.workflow !== "" && e.workflow !== filter.workflow) return false;
  if (filter.errorType !== "" && e.stored.et !== filter.errorType) return false;
  if (filter.since !== undefined && e.stored.t < filter.since) return false;
  if (filter.until !== undefined && e.stored.t >= filter.until) return false;
  return true;
}
