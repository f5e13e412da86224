export { hashToken, type Scope, type TokenConfig } from "./auth.js";
export {
  addDefaults,
  ConfigError,
  type DaemonConfig,
  DEFAULT_CONFIG,
  helpText,
  type LogLevel,
  loadConfig,
  type ParsedCommandLine,
  parseBytes,
  parseDuration,
  parseHostPort,
  redactRedisUrl,
} from "./config.js";
export { type DaemonHandle, PRIVATE_REDIS_DIR, type StartDaemonOptions, startDaemon } from "./daemon.js";
export { createLogger, type LoggerOptions } from "./observability/logger.js";
export { MetricsRegistry } from "./observability/metrics.js";
export {
  freePort,
  type RedisServer,
  RedisServerMissingError,
  type RedisServerOptions,
  startRedisServer,
} from "./redis/private-redis.js";
export {
  closeRedis,
  createRedisClient,
  isRedisUnavailableError,
  onRedisUnavailable,
  redisErrorToConnect,
} from "./redis/redis.js";
export { RedisMonitor, type RedisMonitorOptions } from "./redis/redis-monitor.js";
export { CallGuard, shuttingDownError } from "./server/call-guard.js";
export { type HealthReporter, HealthState, ServingStatus } from "./server/health.js";
export { ReflectionCatalog } from "./server/reflection.js";
export type { ServiceContext, WeftServices, WeftServicesFactory } from "./services/context.js";
