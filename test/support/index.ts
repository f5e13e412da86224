export { type ConnectJsonResult, connectJson } from "./connect.js";
export { grpc, grpcClient, grpcError, grpcServerStream, grpcUnary } from "./grpc.js";
export { BUF_BIN, REFLECTION_PROTO, REPO_ROOT } from "./paths.js";
export { ON_CLUSTER, type RedisServer, startTestRedis } from "./redis.js";
export { type ClusterNode, startTestCluster, type TestRedisCluster } from "./redis-cluster.js";
export { redisCommand } from "./redis-command.js";
export { SENTINEL_MASTER_NAME, startTestSentinel, type TestRedisSentinel } from "./redis-sentinel.js";
export { type ReflectionRequest, type ReflectionResponse, reflect } from "./reflection-client.js";
export { type WaitForOptions, waitFor, within } from "./wait-for.js";
export {
  type ExitInfo,
  type LogLine,
  type SpawnWeftdOptions,
  spawnWeftd,
  type WeftdProcess,
  weftdCommand,
} from "./weftd.js";
