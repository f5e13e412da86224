import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type ExecutionPlan,
  type Workflow,
  type WorkflowDefinition,
  WorkflowDefinitionSchema,
  WorkflowSchema,
  type WorkflowSummary,
  WorkflowSummarySchema,
} from "@weft/sdk/gen/weft/v1/workflow_pb.js";
import type { Redis } from "ioredis";
import { contentHash } from "./canonical.js";
import {
  type CompileDefaults,
  type CompiledWorkflow,
  compileWorkflow,
  planOf,
  validateWorkflow,
} from "./dag.js";
import type { Keys } from "./keys.js";
import { LruCache } from "./lru-cache.js";
import { invalidArgument } from "./violations.js";

/** A stored workflow version with its compiled DAG. */
export interface LoadedWorkflow {
  workflow: Workflow;
  compiled: CompiledWorkflow;
  plan: ExecutionPlan;
}

/** Limits applied to submitted definitions. */
export interface WorkflowLimits {
  maxTasks: number;
  maxPayloadBytes: number;
}

// Stores a new version unless identical content exists. KEYS[1]: workflow hash.
// ARGV: content hash, definition bytes, now, task count. Returns {version, created}.
const STORE = `
local v = redis.call('HGET', KEYS[1], 'h:' .. ARGV[1])
if v then return {tonumber(v), 0} end
local n = redis.call('HINCRBY', KEYS[1], 'latest', 1)
redis.call('HSET', KEYS[1], 'h:' .. ARGV[1], n, 'd:' .. n, ARGV[2], 't:' .. n, ARGV[3], 'n:' .. n, ARGV[4], 'c:' .. n, ARGV[1])
return {n, 1}
`;

const NAME_RE = /^[A-Za-z0-9_.-]{1,128}$/;

/**
 * Workflow definitions in Redis, versioned by content, with the compiled DAG
 * of recently used versions kept in memory (versions never change once stored).
 */
export class WorkflowStore {
  private readonly cache = new LruCache<string, LoadedWorkflow>(256);

  constructor(
    private readonly redis: Redis,
    private readonly keys: Keys,
    private readonly limits: WorkflowLimits,
    private readonly defaults: CompileDefaults,
  ) {}

  /** Validates a definition, throwing INVALID_ARGUMENT with every violation. */
  validate(def: WorkflowDefinition): { compiled: CompiledWorkflow; plan: ExecutionPlan } {
    const violations = validateWorkflow(def, this.limits);
    if (violations.length > 0) throw invalidArgument(violations);
    const compiled = compileWorkflow(def, this.defaults);
    return { compiled, plan: planOf(compiled) };
  }

  /** Stores a definition; identical content returns the existing version with created=false. */
  async submit(def: WorkflowDefinition): Promise<{ loaded: LoadedWorkflow; created: boolean }> {
    const { compiled, plan } = this.validate(def);
    const hash = contentHash(def);
    const bytes = Buffer.from(toBinary(WorkflowDefinitionSchema, def));
    const now = Date.now();
    const key = this.keys.workflow(def.name);
    const [, stored] = (await this.redis
      .multi()
      .zadd(this.keys.workflowIndex(), "NX", 0, def.name)
      .eval(STORE, 1, key, hash, bytes, now, def.tasks.length)
      .exec()
      .then(checkExec)) as [unknown, [number, number]];
    const [version, created] = stored;
    const cacheKey = `${def.name}@${version}`;
    let loaded = this.cache.get(cacheKey);
    if (loaded === undefined) {
      const createTime = created === 1 ? now : Number(await this.redis.hget(key, `t:${version}`));
      loaded = {
        workflow: create(WorkflowSchema, {
          name: def.name,
          version,
          definition: def,
          createTime: timestampFromMs(createTime),
          contentHash: hash,
        }),
        compiled,
        plan,
      };
      this.cache.set(cacheKey, loaded);
    }
    return { loaded, created: created === 1 };
  }

  /** Loads a version (0: the latest), or throws NOT_FOUND naming what is missing. */
  async get(name: string, version: number): Promise<LoadedWorkflow> {
    if (version > 0) {
      const hit = this.cache.get(`${name}@${version}`);
      if (hit !== undefined) return hit;
    }
    if (!NAME_RE.test(name)) throw new ConnectError(`workflow "${name}" not found`, Code.NotFound);
    const key = this.keys.workflow(name);
    const latest = Number((await this.redis.hget(key, "latest")) ?? 0);
    if (latest === 0) throw new ConnectError(`workflow "${name}" not found`, Code.NotFound);
    const v = version === 0 ? latest : version;
    if (v > latest) {
      throw new ConnectError(`workflow "${name}" has no version ${v} (latest is ${latest})`, Code.NotFound);
    }
    const hit = this.cache.get(`${name}@${v}`);
    if (hit !== undefined) return hit;
    const [bytes, createTime, hash] = await Promise.all([
      this.redis.hgetBuffer(key, `d:${v}`),
      this.redis.hget(key, `t:${v}`),
      this.redis.hget(key, `c:${v}`),
    ]);
    if (bytes === null) throw new ConnectError(`workflow "${name}" has no version ${v}`, Code.NotFound);
    const definition = fromBinary(WorkflowDefinitionSchema, bytes);
    const compiled = compileWorkflow(definition, this.defaults);
    const loaded: LoadedWorkflow = {
      workflow: create(WorkflowSchema, {
        name,
        version: v,
        definition,
        createTime: timestampFromMs(Number(createTime)),
        contentHash: hash ?? "",
      }),
      compiled,
      plan: planOf(compiled),
    };
    this.cache.set(`${name}@${v}`, loaded);
    return loaded;
  }

  /** One page of workflows ordered by name, after the name in `after`. */
  async list(pageSize: number, after: string): Promise<{ workflows: WorkflowSummary[]; next: string }> {
    const start = after === "" ? "-" : `(${after}`;
    const names = await this.redis.zrangebylex(
      this.keys.workflowIndex(),
      start,
      "+",
      "LIMIT",
      0,
      pageSize + 1,
    );
    const page = names.slice(0, pageSize);
    const pipeline = this.redis.pipeline();
    for (const name of page) pipeline.hget(this.keys.workflow(name), "latest");
    const latest = (await pipeline.exec().then(checkExec)) as (string | null)[];
    const details = this.redis.pipeline();
    page.forEach((name, i) => {
      details.hmget(this.keys.workflow(name), `n:${latest[i]}`, `t:${latest[i]}`);
    });
    const rows = (await details.exec().then(checkExec)) as [string | null, string | null][];
    const workflows = page.map((name, i) =>
      create(WorkflowSummarySchema, {
        name,
        latestVersion: Number(latest[i] ?? 0),
        taskCount: Number(rows[i]?.[0] ?? 0),
        updateTime: timestampFromMs(Number(rows[i]?.[1] ?? 0)),
      }),
    );
    return { workflows, next: names.length > pageSize ? (page[page.length - 1] ?? "") : "" };
  }
}

/** Unwraps an ioredis pipeline or transaction result, throwing its first error. */
export function checkExec(results: [Error | null, unknown][] | null): unknown[] {
  if (results === null) throw new Error("Redis transaction was aborted");
  return results.map(([err, value]) => {
    if (err !== null) throw err;
    return value;
  });
}
