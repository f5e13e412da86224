import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { RunStatus } from "@weft/sdk/gen/weft/v1/run_pb.js";
import { WorkflowSchema } from "@weft/sdk/gen/weft/v1/workflow_pb.js";
import type { WorkflowService } from "@weft/sdk/gen/weft/v1/workflow_service_pb.js";
import type { Engine } from "../engine/engine.js";
import { checkRunId } from "../engine/runs/index.js";
import type { AbortFanOut } from "../server/abort-fanout.js";
import { envelopeSink } from "../server/response-stream.js";
import { pageSizeOf, RequestCheck } from "./request-checks.js";
import { watchRunsStream } from "./watch-runs.js";

/** Most runs one BatchTrigger call starts. */
const MAX_TRIGGERS_PER_CALL = 1000;

/** weft.v1.WorkflowService on top of the engine. */
export function workflowService(engine: Engine, shutdown: AbortFanOut): ServiceImpl<typeof WorkflowService> {
  return {
    async submitWorkflow(req) {
      const definition = req.definition;
      if (definition === undefined) {
        new RequestCheck().require(false, "definition", "is required").done();
        return {};
      }
      if (req.validateOnly) {
        const { plan } = engine.workflows.validate(definition);
        return {
          workflow: create(WorkflowSchema, { name: definition.name, version: 0, definition }),
          created: false,
          plan,
        };
      }
      return engine.workflows.submit(definition);
    },

    async getWorkflow(req) {
      new RequestCheck().name(req.name, "name").done();
      return engine.workflows.describe(req.name, req.version);
    },

    async listWorkflows(req) {
      new RequestCheck().pageSize(req.pageSize).done();
      const after = decodeName(req.pageToken);
      const { workflows, next } = await engine.workflows.list(pageSizeOf(req.pageSize), after);
      return { workflows, nextPageToken: next === "" ? "" : Buffer.from(next).toString("base64url") };
    },

    async trigger(req) {
      const check = new RequestCheck()
        .name(req.workflow, "workflow")
        .require(req.idempotencyKey.length <= 256, "idempotency_key", "must be at most 256 characters");
      const input = check.json(req.input, "input");
      check.done();
      return engine.runs.trigger(req.workflow, req.version, input, req.idempotencyKey);
    },

    async batchTrigger(req) {
      const check = new RequestCheck().require(
        req.requests.length > 0 && req.requests.length <= MAX_TRIGGERS_PER_CALL,
        "requests",
        `must hold 1 to ${MAX_TRIGGERS_PER_CALL} requests`,
      );
      const inputs = req.requests.map((r, i) =>
        check
          .name(r.workflow, `requests[${i}].workflow`)
          .require(
            r.idempotencyKey.length <= 256,
            `requests[${i}].idempotency_key`,
            "must be at most 256 characters",
          )
          .json(r.input, `requests[${i}].input`),
      );
      check.done();
      const responses = await engine.runs.triggerMany(
        req.requests.map((r, i) => ({
          workflow: r.workflow,
          version: r.version,
          input: inputs[i],
          idempotencyKey: r.idempotencyKey,
        })),
        (i, field) => `requests[${i}].${field}`,
        // A call does no more than the largest Trigger may: runs of large workflows go in smaller calls.
        engine.options.maxTasksPerWorkflow,
      );
      return { responses };
    },

    async getRun(req) {
      const { run, next } = await engine.runs.getPage(req.runId, req.taskPageToken);
      return { run, nextTaskPageToken: next };
    },

    async getTaskRun(req) {
      const check = new RequestCheck();
      if (req.runId === "") check.require(false, "run_id", "is required");
      check.name(req.taskId, "task_id").done();
      checkRunId(req.runId);
      return { task: await engine.runs.reads.getTask(req.runId, req.taskId) };
    },

    async listRuns(req) {
      const check = new RequestCheck().pageSize(req.pageSize);
      if (req.workflow !== "") check.name(req.workflow, "workflow");
      if (req.scheduleId !== "") check.name(req.scheduleId, "schedule_id");
      req.statuses.forEach((s, i) => {
        check.require(
          s !== RunStatus.UNSPECIFIED && RunStatus[s] !== undefined,
          `statuses[${i}]`,
          "is not a run status",
        );
      });
      check.done();
      const { runs, next } = await engine.runs.list({
        workflow: req.workflow,
        scheduleId: req.scheduleId,
        statuses: req.statuses,
        pageSize: pageSizeOf(req.pageSize),
        pageToken: req.pageToken,
      });
      return { runs, nextPageToken: next };
    },

    watchRun(req, ctx) {
      new RequestCheck().require(req.afterSequence >= 0n, "after_sequence", "must not be negative").done();
      // Released when the call's signal aborts, which Connect does once the call is over.
      const { signal } = shutdown.follow(ctx.signal);
      return engine.watches.watch(
        req.runId,
        Number(req.afterSequence),
        signal,
        (err) =>
          shutdown.aborted
            ? new ConnectError("weftd is shutting down; reconnect to resume", Code.Unavailable)
            : err,
        envelopeSink(ctx),
      );
    },

    watchRuns(requests, ctx) {
      return watchRunsStream(engine, shutdown, requests, ctx);
    },

    async cancel(req) {
      new RequestCheck()
        .require(req.reason.length <= 1024, "reason", "must be at most 1024 characters")
        .done();
      return { run: await engine.runs.cancel(req.runId, req.reason) };
    },
  };
}

function decodeName(token: string): string {
  if (token === "") return "";
  const name = Buffer.from(token, "base64url").toString();
  new RequestCheck()
    .require(/^[A-Za-z0-9_.-]{1,128}$/.test(name), "page_token", "is not a token returned by ListWorkflows")
    .done();
  return name;
}
