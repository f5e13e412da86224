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
import type { RedisClient } from "../../redis/redis.js";
import { anySlotPipeline, invalidArgument, type Keys, LruCache } from "../shared/index.js";
import type { CompiledWorkflow } from "./compiled-workflow.js";
import { type CompileDefaults, compileWorkflow, planOf, validateWorkflow } from "./dag.js";
import { definitionHash } from "./definition-hash.js";
import { answerViolations, workflowAnswerBytes, workflowTooLarge } from "./workflow-answer.js";

/** A stored workflow version with its compiled DAG, as the engine runs it. */
export interface LoadedWorkflow {
  /**
   * The version's name, number, time and hash. Its definition holds every
   * workflow-level setting but no tasks (they are in `compiled`);
   * {@link WorkflowStore.describe} returns the whole definition.
   */
  workflow: Workflow;
  compiled: CompiledWorkflow;
}

/** A workflow version as the API returns it: the whole definition and its execution plan. */
export interface DescribedWorkflow {
  workflow: Workflow;
  plan: ExecutionPlan;
}

/** Limits applied to submitted definitions. */
export interface WorkflowLimits {
  maxTasks: number;
  maxPayloadBytes: number;
  /**
   * Tasks of compiled versions kept in memory per cache generation (the cache holds up to twice
   * this, and at least the version in use).
   */
  cacheTasks: number;
  /** Largest answer (--max-response-bytes); definitions whose answers or assignments cannot fit are refused. */
  maxResponseBytes?: number;
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

/** Most versions kept compiled in memory per cache generation, whatever their size. */
const CACHE_VERSIONS = 256;

/**
 * Workflow definitions in Redis, versioned by content, with the compiled DAG
 * of recently used versions kept in memory (versions never change once
 * stored), bounded by their number and by their total tasks.
 */
export class WorkflowStore {
  private readonly cache: LruCache<string, LoadedWorkflow>;
  /** Loads in progress, so that concurrent steps of a run whose version left the cache load it once. */
  private readonly loading = new Map<string, Promise<LoadedWorkflow>>();

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly limits: WorkflowLimits,
    private readonly defaults: CompileDefaults,
  ) {
    this.cache = new LruCache({
      maxEntries: CACHE_VERSIONS,
      maxWeight: limits.cacheTasks,
      weigh: (loaded) => loaded.compiled.size,
    });
  }

  /** Compiled versions held in memory and their tasks. */
  get cached(): { versions: number; tasks: number } {
    return { versions: this.cache.size, tasks: this.cache.weight };
  }

  /** Validates a definition, throwing INVALID_ARGUMENT with every violation. */
  validate(def: WorkflowDefinition): { compiled: CompiledWorkflow; plan: ExecutionPlan } {
    return this.compile(def);
  }

  /** Stores a definition; identical content returns the existing version with created=false. */
  async submit(def: WorkflowDefinition): Promise<DescribedWorkflow & { created: boolean }> {
    const { compiled, plan } = this.compile(def);
    const hash = definitionHash(def);
    const binary = toBinary(WorkflowDefinitionSchema, def);
    const now = Date.now();
    const key = this.keys.workflow(def.name);
    // The index and the workflow's hash are keys of two slots (a Redis Cluster runs no transaction
    // across them): the name enters the index first, so that a stored workflow is always listed; a
    // name whose store failed is listed by nothing (ListWorkflows skips names without a version)
    // until a submit of that name succeeds.
    await this.redis.zadd(this.keys.workflowIndex(), "NX", 0, def.name);
    const stored = (await this.redis.eval(
      STORE,
      1,
      key,
      hash,
      Buffer.from(binary.buffer, binary.byteOffset, binary.byteLength),
      now,
      def.tasks.length,
    )) as [number, number];
    const [version, created] = stored;
    const cacheKey = `${def.name}@${version}`;
    let loaded = this.cache.get(cacheKey);
    if (loaded === undefined) {
      const createTime = created === 1 ? now : Number(await this.redis.hget(key, `t:${version}`));
      loaded = { workflow: header(def, version, createTime, hash), compiled };
      this.cache.set(cacheKey, loaded);
    }
    return {
      workflow: create(WorkflowSchema, { ...loaded.workflow, definition: def }),
      plan,
      created: created === 1,
    };
  }

  /** A version (0: the latest) with its whole definition and plan, or NOT_FOUND. */
  async describe(name: string, version: number): Promise<DescribedWorkflow> {
    const loaded = await this.get(name, version);
    const { workflow } = loaded;
    const bytes = await this.redis.hgetBuffer(this.keys.workflow(name), `d:${workflow.version}`);
    if (bytes === null)
      throw new ConnectError(`workflow "${name}" has no version ${workflow.version}`, Code.NotFound);
    const plan = planOf(loaded.compiled);
    const max = this.limits.maxResponseBytes ?? Number.POSITIVE_INFINITY;
    const answer = workflowAnswerBytes(bytes.length, plan);
    if (answer > max) throw workflowTooLarge(name, workflow.version, answer, max);
    return {
      workflow: create(WorkflowSchema, {
        ...workflow,
        definition: fromBinary(WorkflowDefinitionSchema, bytes),
      }),
      plan,
    };
  }

  /** Loads a version (0: the latest), or throws NOT_FOUND naming what is missing. */
  async get(name: string, version: number): Promise<LoadedWorkflow> {
    if (version > 0) {
      const hit = this.cache.get(`${name}@${version}`);
      if (hit !== undefined) return hit;
    }
    if (!NAME_RE.test(name)) throw new ConnectError(`workflow "${name}" not found`, Code.NotFound);
    let v = version;
    if (v === 0) {
      v = Number((await this.redis.hget(this.keys.workflow(name), "latest")) ?? 0);
      if (v === 0) throw new ConnectError(`workflow "${name}" not found`, Code.NotFound);
    }
    const cacheKey = `${name}@${v}`;
    const hit = this.cache.get(cacheKey);
    if (hit !== undefined) return hit;
    let load = this.loading.get(cacheKey);
    if (load === undefined) {
      load = this.load(name, v).finally(() => this.loading.delete(cacheKey));
      this.loading.set(cacheKey, load);
    }
    return load;
  }

  private async load(name: string, version: number): Promise<LoadedWorkflow> {
    const key = this.keys.workflow(name);
    const [bytes, createTime, hash] = await Promise.all([
      this.redis.hgetBuffer(key, `d:${version}`),
      this.redis.hget(key, `t:${version}`),
      this.redis.hget(key, `c:${version}`),
    ]);
    if (bytes === null) {
      const latest = Number((await this.redis.hget(key, "latest")) ?? 0);
      if (latest === 0) throw new ConnectError(`workflow "${name}" not found`, Code.NotFound);
      throw new ConnectError(
        `workflow "${name}" has no version ${version} (latest is ${latest})`,
        Code.NotFound,
      );
    }
    const definition = fromBinary(WorkflowDefinitionSchema, bytes);
    const loaded: LoadedWorkflow = {
      workflow: header(definition, version, Number(createTime), hash ?? ""),
      compiled: compileWorkflow(definition, this.defaults),
    };
    this.cache.set(`${name}@${version}`, loaded);
    return loaded;
  }

  private compile(def: WorkflowDefinition): { compiled: CompiledWorkflow; plan: ExecutionPlan } {
    const violations = validateWorkflow(def, this.limits);
    if (violations.length > 0) throw invalidArgument(violations);
    const compiled = compileWorkflow(def, this.defaults);
    const plan = planOf(compiled);
    const max = this.limits.maxResponseBytes;
    if (max !== undefined) {
      const tooLarge = answerViolations(def, compiled, plan, max);
      if (tooLarge.length > 0) throw invalidArgument(tooLarge);
    }
    return { compiled, plan };
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
    // A page holds fewer names when more would not fit in one answer (a summary takes at most
    // about 40 bytes besides its name).
    let room = (this.limits.maxResponseBytes ?? Number.POSITIVE_INFINITY) - 64;
    let fit = 0;
    while (fit < Math.min(pageSize, names.length)) {
      room -= 40 + Buffer.byteLength(names[fit] as string);
      if (room < 0) break;
      fit++;
    }
    const page = names.slice(0, Math.max(1, fit));
    // The workflows' hashes are keys of many slots: one pipeline on one server, spread by node on a Cluster.
    const pipeline = anySlotPipeline(this.redis);
    for (const name of page) pipeline.hget(this.keys.workflow(name), "latest");
    const latest = (await pipeline.exec().then(checkExec)) as (string | null)[];
    const details = anySlotPipeline(this.redis);
    page.forEach((name, i) => {
      details.hmget(this.keys.workflow(name), `n:${latest[i]}`, `t:${latest[i]}`);
    });
    const rows = (await details.exec().then(checkExec)) as [string | null, string | null][];
    const workflows: WorkflowSummary[] = [];
    page.forEach((name, i) => {
      // A name whose first store failed has no version: it is not a workflow (see submit).
      if (latest[i] === null || latest[i] === undefined) return;
      workflows.push(
        create(WorkflowSummarySchema, {
          name,
          latestVersion: Number(latest[i] ?? 0),
          taskCount: Number(rows[i]?.[0] ?? 0),
          updateTime: timestampFromMs(Number(rows[i]?.[1] ?? 0)),
        }),
      );
    });
    return { workflows, next: names.length > page.length ? (page[page.length - 1] ?? "") : "" };
  }
}

/** A version's Workflow message with a definition stripped of its tasks (kept compiled instead). */
function header(def: WorkflowDefinition, version: number, createTime: number, contentHash: string): Workflow {
  return create(WorkflowSchema, {
    name: def.name,
    version,
    definition: create(WorkflowDefinitionSchema, { ...def, tasks: [] }),
    createTime: timestampFromMs(createTime),
    contentHash,
  });
}

/** Unwraps an ioredis pipeline result, throwing its first error. */
function checkExec(results: [Error | null, unknown][] | null): unknown[] {
  if (results === null) throw new Error("Redis pipeline was aborted");
  return results.map(([err, value]) => {
    if (err !== null) throw err;
    return value;
  });
}
