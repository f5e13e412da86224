export { hashToken, type Scope, type TokenConfig } from "./auth.js";
export { CallGuard, shuttingDownError } from "./call-guard.js";
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
export { type HealthReporter, HealthState, ServingStatus } from "./health.js";
export { createLogger, type LoggerOptions } from "./logger.js";
export { MetricsRegistry } from "./metrics.js";
export {
  freePort,
  type RedisServer,
  RedisServerMissingError,
  type RedisServerOptions,
  startRedisServer,
} from "./private-redis.js";
export {
  closeRedis,
  createRedisClient,
  isRedisUnavailableError,
  onRedisUnavailable,
  redisErrorToConnect,
} from "./redis.js";
export { RedisMonitor, type RedisMonitorOptions } from "./redis-monitor.js";
export { ReflectionCatalog } from "./reflection.js";
export type { ServiceContext, WeftServices, WeftServicesFactory } from "./services/context.js";
