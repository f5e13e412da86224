/**
 * The circuit breakers' atomic steps, as Lua scripts on a task queue's circuit keys (one hash slot:
 * the queue's name is the hash tag). KEYS[1] is the queue's circuits hash: circuit ("*" for the
 * whole queue, else a handler) → state {s, t, u, m, n}:
 *   s  C closed, O open, H half-open      t  since when (ms)
 *   u  while open, until when (ms; 0: until closed by hand)
 *   m  1 when set by hand                 n  how many times it opened
 * Beside it, per circuit, a sorted set of recent failures (f:) and one of the probes let through
 * while half-open (p:), both scored by time.
 *
 * An open circuit whose time is up becomes half-open when a step next looks at it. Each script
 * returns the transitions it made as "circuit|state" entries, for the replica's counters.
 */
const COMMON = `
local HASH = KEYS[1]
local trans = {}
local function load(c)
  local raw = redis.call('HGET', HASH, c)
  if raw then return cjson.decode(raw) end
  return nil
end
local function save(c, st) redis.call('HSET', HASH, c, cjson.encode(st)) end
local function moved(c, st) trans[#trans + 1] = c .. '|' .. st.s end
-- An open circuit whose time is up lets probes through.
local function settle(c, st, now)
  if st.s == 'O' and st.u > 0 and now >= st.u then
    st.s = 'H'; st.t = now; st.m = 0
    save(c, st)
    moved(c, st)
  end
end
local function open(c, st, now, openMs)
  st.s = 'O'; st.t = now; st.u = now + openMs; st.m = 0; st.n = (st.n or 0) + 1
  save(c, st)
  moved(c, st)
end
`;

/**
 * Whether a task may start. KEYS: the hash, the probes of the queue's circuit, those of the
 * handler's. ARGV: now, handler, member (the job id), then open ms and probes of the queue's
 * circuit, then of the handler's. Returns {'ok', trans...} or {'held', circuit, state, until,
 * trans...}: `until` is when to look again (0: the circuit stays open until closed by hand). A
 * half-open circuit lets a job through as a probe while it has fewer than `probes` probes younger
 * than its open time (a probe that reports nothing frees its place then); the same job again is
 * the same probe.
 */
export const ADMIT = `${COMMON}
local now, member = tonumber(ARGV[1]), ARGV[3]
local circuits = {
  { '*', KEYS[2], tonumber(ARGV[4]), tonumber(ARGV[5]) },
  { ARGV[2], KEYS[3], tonumber(ARGV[6]), tonumber(ARGV[7]) },
}
local probing = {}
for _, c in ipairs(circuits) do
  local st = load(c[1])
  if st and st.s ~= 'C' then
    settle(c[1], st, now)
    if st.s == 'O' then
      local result = {'held', c[1], 'O', st.u}
      for _, t in ipairs(trans) do result[#result + 1] = t end
      return result
    end
    redis.call('ZREMRANGEBYSCORE', c[2], '-inf', now - c[3])
    if not redis.call('ZSCORE', c[2], member) then
      if redis.call('ZCARD', c[2]) >= c[4] then
        local oldest = redis.call('ZRANGE', c[2], 0, 0, 'WITHSCORES')
        local result = {'held', c[1], 'H', tonumber(oldest[2]) + c[3]}
        for _, t in ipairs(trans) do result[#result + 1] = t end
        return result
      end
      probing[#probing + 1] = c
    end
  end
end
for _, c in ipairs(probing) do
  redis.call('ZADD', c[2], now, member)
  redis.call('PEXPIRE', c[2], 2 * c[3])
end
local result = {'ok'}
for _, t in ipairs(trans) do result[#result + 1] = t end
return result
`;

/**
 * A counted failure of a task of the circuit. KEYS: the hash, the circuit's failures, its probes.
 * ARGV: circuit, now, windowMs, threshold, openMs, member (the attempt). A closed circuit opens
 * once `threshold` failures fall within the window; a half-open one opens again. Returns trans.
 */
export const FAILURE = `${COMMON}
local c, now = ARGV[1], tonumber(ARGV[2])
local window, threshold, openMs = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local st = load(c)
if not st then
  st = { s = 'C', t = now, u = 0, m = 0, n = 0 }
  save(c, st)
end
settle(c, st, now)
if st.s == 'H' then
  redis.call('DEL', KEYS[2], KEYS[3])
  open(c, st, now, openMs)
elseif st.s == 'C' then
  redis.call('ZADD', KEYS[2], now, ARGV[6])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
  redis.call('PEXPIRE', KEYS[2], window)
  if redis.call('ZCARD', KEYS[2]) >= threshold then
    redis.call('DEL', KEYS[2], KEYS[3])
    open(c, st, now, openMs)
  end
end
return trans
`;

/**
 * A success of a task of the queue. KEYS: the hash, then failures and probes of the queue's
 * circuit, then of the handler's. ARGV: now, handler. A half-open circuit closes. Returns trans.
 */
export const SUCCESS = `${COMMON}
local now = tonumber(ARGV[1])
local circuits = { { '*', KEYS[2], KEYS[3] }, { ARGV[2], KEYS[4], KEYS[5] } }
for _, c in ipairs(circuits) do
  local st = load(c[1])
  if st and st.s ~= 'C' then
    settle(c[1], st, now)
    if st.s == 'H' then
      st.s = 'C'; st.t = now; st.u = 0; st.m = 0
      save(c[1], st)
      redis.call('DEL', c[2], c[3])
      moved(c[1], st)
    end
  end
end
return trans
`;

/**
 * Opens or closes a circuit by hand. KEYS: the hash, the circuit's failures, its probes. ARGV:
 * circuit, 'O' or 'C', now, openForMs (0: until closed by hand). Returns trans.
 */
export const SET_STATE = `${COMMON}
local c, now = ARGV[1], tonumber(ARGV[3])
local st = load(c) or { s = 'C', t = now, u = 0, m = 0, n = 0 }
redis.call('DEL', KEYS[3])
if ARGV[2] == 'O' then
  local forMs = tonumber(ARGV[4])
  st.s = 'O'; st.t = now; st.m = 1; st.n = (st.n or 0) + 1
  if forMs > 0 then st.u = now + forMs else st.u = 0 end
else
  redis.call('DEL', KEYS[2])
  st.s = 'C'; st.t = now; st.u = 0; st.m = 1
end
save(c, st)
moved(c, st)
return trans
`;
