import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  BadRequest_FieldViolationSchema,
  BadRequestSchema,
} from "@weft/sdk/gen/google/rpc/error_details_pb.js";

/** One invalid field of a request: its path and what is wrong with it. */
export interface Violation {
  field: string;
  description: string;
}

/**
 * INVALID_ARGUMENT naming every violation in the message ("field: problem;
 * ..."), with a google.rpc.BadRequest detail for programs.
 */
export function invalidArgument(violations: Violation[]): ConnectError {
  const shown = violations.slice(0, 20).map((v) => `${v.field}: ${v.description}`);
  if (violations.length > 20) shown.push(`and ${violations.length - 20} more`);
  return new ConnectError(shown.join("; "), Code.InvalidArgument, undefined, [
    {
      desc: BadRequestSchema,
      value: create(BadRequestSchema, {
        fieldViolations: violations.map((v) => create(BadRequest_FieldViolationSchema, v)),
      }),
    },
  ]);
}
