export { type ConnectJsonResult, connectJson } from "./connect.js";
export { grpc, grpcClient, grpcError, grpcServerStream, grpcUnary } from "./grpc.js";
export { BUF_BIN, REFLECTION_PROTO, REPO_ROOT } from "./paths.js";
export { type RedisServer, startTestRedis } from "./redis.js";
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
