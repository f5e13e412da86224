/**
 * The Lua steps of schedules. A schedule's state is one hash, `<prefix>:sched:{<id>}` (hash-tagged
 * by the schedule id), with its runs' index `<prefix>:sched:{<id>}:runs` in the same slot; each step
 * below changes one schedule's keys atomically, or the due set alone (CLAIM, REQUEUE), never both
 * in one call (different Redis Cluster slots).
 *
 * The hash's fields:
 *   id    the schedule id          spec  the spec, JSON (see schedule-spec.ts)   in  the run input, JSON
 *   st    status: A active, P paused, E ended
 *   nf    next fire time (ms), '' when none is left
 *   gen   generation: changes when a call moves nf (update, resume), so that a fire step that read
 *         the schedule before fails its compare-and-set instead of undoing the call
 *   lt    last fire time handled by the clock   lr  last run started (by the clock or TriggerSchedule)
 *   fc    runs the clock started   sk  fire times skipped   ms  fire times missed
 *   bf    buffered fire time (BUFFER_ONE)   bw  when it was buffered (ms)
 *   ct    created (ms)   ut  updated (ms)   pn  pause note   le  why the last fire started no run
 */

/** Creates a schedule. ARGV: id, spec, input, status, nextFire, now. Returns 1, or 0 when the id is taken. */
export const CREATE = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'spec', ARGV[2], 'in', ARGV[3], 'st', ARGV[4], 'nf', ARGV[5],
  'gen', 1, 'ct', ARGV[6], 'ut', ARGV[6], 'fc', 0, 'sk', 0, 'ms', 0)
return 1
`;

/**
 * Replaces a schedule's spec. ARGV: spec, input, nextFire ('' none), now. A paused schedule stays
 * paused (its next fire is computed again when it resumes). Returns the status, or false when the
 * schedule does not exist.
 */
export const UPDATE = `
local st = redis.call('HGET', KEYS[1], 'st')
if not st then return false end
local fields = {'spec', ARGV[1], 'in', ARGV[2], 'ut', ARGV[4], 'le', ''}
if st ~= 'P' then
  if ARGV[3] == '' then st = 'E' else st = 'A' end
  fields[#fields + 1] = 'st'; fields[#fields + 1] = st
  fields[#fields + 1] = 'nf'; fields[#fields + 1] = ARGV[3]
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('HINCRBY', KEYS[1], 'gen', 1)
return st
`;

/**
 * Pauses a schedule. ARGV: note, now. A buffered fire is dropped (counted as skipped). Returns the
 * status before ('A', 'P' or 'E'), or false when the schedule does not exist; an ended one is left.
 */
export const PAUSE = `
local st = redis.call('HGET', KEYS[1], 'st')
if not st then return false end
if st == 'E' then return st end
redis.call('HSET', KEYS[1], 'st', 'P', 'pn', ARGV[1], 'ut', ARGV[2])
if redis.call('HDEL', KEYS[1], 'bf', 'bw') > 0 then redis.call('HINCRBY', KEYS[1], 'sk', 1) end
return st
`;

/**
 * Resumes a paused schedule from the next fire time after now. ARGV: nextFire ('' none), now.
 * Returns the status after ('A', or 'E' when no fire time is left); an active or ended schedule is
 * left as it is (its status returned); false when it does not exist.
 */
export const RESUME = `
local st = redis.call('HGET', KEYS[1], 'st')
if not st then return false end
if st ~= 'P' then return st end
if ARGV[1] == '' then st = 'E' else st = 'A' end
redis.call('HSET', KEYS[1], 'st', st, 'nf', ARGV[1], 'ut', ARGV[2])
redis.call('HDEL', KEYS[1], 'pn')
redis.call('HINCRBY', KEYS[1], 'gen', 1)
return st
`;

/**
 * Records what a fire step did, if the schedule's next fire and generation are still those the
 * step read (compare-and-set: a repeated or overtaken step changes nothing). KEYS: the hash, the
 * schedule's runs index. ARGV: expectedNextFire, generation, nextFire ('' none left), handled fire
 * time ('' none), run id ('' none), fired (0/1), skipped (0/1), missed (count), buffered ('' keep,
 * '-' drop, else the fire time to keep), now, prune index entries created before this (ms), last
 * error ('' none, '-' keep). Returns {'ok', status}, {'stale'} or {'gone'}.
 */
export const ADVANCE = `
local h = redis.call('HMGET', KEYS[1], 'st', 'nf', 'gen')
if not h[1] then return {'gone'} end
if h[2] ~= ARGV[1] or h[3] ~= ARGV[2] then return {'stale'} end
local st = h[1]
local set = {'nf', ARGV[3]}
if ARGV[3] == '' and st == 'A' then
  st = 'E'
  set[#set + 1] = 'st'; set[#set + 1] = 'E'
end
if ARGV[4] ~= '' then set[#set + 1] = 'lt'; set[#set + 1] = ARGV[4] end
if ARGV[5] ~= '' then set[#set + 1] = 'lr'; set[#set + 1] = ARGV[5] end
if ARGV[12] ~= '-' then set[#set + 1] = 'le'; set[#set + 1] = ARGV[12] end
if ARGV[9] == '-' then
  redis.call('HDEL', KEYS[1], 'bf', 'bw')
elseif ARGV[9] ~= '' then
  set[#set + 1] = 'bf'; set[#set + 1] = ARGV[9]
  set[#set + 1] = 'bw'; set[#set + 1] = ARGV[10]
end
redis.call('HSET', KEYS[1], unpack(set))
if ARGV[6] == '1' then redis.call('HINCRBY', KEYS[1], 'fc', 1) end
if ARGV[7] == '1' then redis.call('HINCRBY', KEYS[1], 'sk', 1) end
if tonumber(ARGV[8]) > 0 then redis.call('HINCRBY', KEYS[1], 'ms', ARGV[8]) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[11])
return {'ok', st}
`;

/**
 * Records the run a buffered fire started, if that fire is still the one buffered. ARGV: buffered
 * fire time, run id. Returns 1 when recorded.
 */
export const BUFFER_STARTED = `
if redis.call('HGET', KEYS[1], 'bf') ~= ARGV[1] then return 0 end
redis.call('HDEL', KEYS[1], 'bf', 'bw')
redis.call('HSET', KEYS[1], 'lr', ARGV[2], 'le', '')
redis.call('HINCRBY', KEYS[1], 'fc', 1)
return 1
`;

/** Records the run TriggerSchedule started as the schedule's last. ARGV: run id. Returns 1, 0 when gone. */
export const RECORD_RUN = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'lr', ARGV[1])
return 1
`;

/**
 * Claims the due schedules: up to ARGV[2] of those whose due time has come, by Redis's clock, get
 * the score of a lease ARGV[1] ms long, so that no other replica takes them meanwhile (a replica
 * that dies lets them come due again when the lease ends). KEYS[1]: the due set. Returns {now,
 * lease, head (the earliest score left, '' when the set is empty), id...}.
 */
export const CLAIM = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local lease = now + tonumber(ARGV[1])
for i = 1, #ids, 500 do
  local args = {}
  for j = i, math.min(i + 499, #ids) do
    args[#args + 1] = lease; args[#args + 1] = ids[j]
  end
  redis.call('ZADD', KEYS[1], unpack(args))
end
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local result = {now, lease, head[2] or ''}
for _, id in ipairs(ids) do result[#result + 1] = id end
return result
`;

/**
 * Hands a claimed schedule back to the due set: at its next due time (ARGV[3]), or out of the set
 * ('-'), only if its score is still the lease it was claimed with (ARGV[2]): a call that moved it
 * since (create, update, resume) or another replica's claim wins. When the schedule becomes the
 * set's earliest, every replica is told on channel ARGV[4] (with ARGV[5], PUBLISH or on a Cluster
 * SPUBLISH). KEYS[1]: the due set; ARGV[1]: the id.
 */
export const REQUEUE = `
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return 0 end
if ARGV[3] == '-' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
local head = redis.call('ZRANGE', KEYS[1], 0, 0)
if head[1] == ARGV[1] then redis.call(ARGV[5], ARGV[4], ARGV[3]) end
return 1
`;
