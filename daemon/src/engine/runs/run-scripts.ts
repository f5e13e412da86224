/**
 * The atomic steps of a run, as Lua scripts. Each step reads and writes only the
 * keys of one run (run, tasks, events: one hash slot), appends the events it
 * causes to the run's event list with consecutive sequence numbers (one RPUSH
 * per run and call, once its steps are done), and publishes the last sequence
 * on the list's key as a channel ("<sequence>f" when the step finished the
 * run, which it also announces on its workflow's channel: see announceFinish).
 *
 * An event is one list entry, the JSON array [sequence, time, field, value...]:
 * the event with sequence s sits at index s - 1, so a reader takes the events
 * after any sequence with one LRANGE. (A stream per run would cost 4 KiB more
 * per run: Redis preallocates each new stream's first node.)
 *
 * The steps of a task under a lease (START, RELEASE, HEARTBEAT, COMPLETE, FAIL)
 * are in task-scripts.ts; the run's own steps (TRIGGER, CANCEL, FINISH, WAIT) here.
 *
 * The batched scripts (TRIGGER, START, COMPLETE) carry the steps of several
 * runs: KEYS holds three keys per run, ARGV[1] the number of runs, then for each
 * run the number of its steps and their arguments; the reply holds one entry
 * per run, in order. The other scripts take one run (KEYS[1..3]).
 *
 * The tasks hash holds, for task id X (ids are [A-Za-z0-9_.-], so never hold
 * a colon):
 *   X    the task's record, a small JSON object, once the task left PENDING
 *   d:X  how many of its parents have not succeeded yet (tasks with parents)
 *   o:X  its output once it succeeded, JSON text Lua never parses (cjson would
 *        round large numbers)
 *   h:N:X the error of its attempt N (0: it never started), {t, m, d, at, w},
 *        message and details cut short (see FAIL); cleared when a resume runs
 *        the task again
 * The run's hash holds, besides its own fields, `gen` (how many times it was
 * resumed), `rt` (when it was last resumed), `ri:K` (the resume count a resume
 * with idempotency key K made) and, for each task that failed for good,
 * `x:X`, its dead-letter entry {g, t, q, h, a, et}: the resume count then,
 * when, queue, handler, attempts and error type (see FAIL and RESUME).
 * One hash instead of three keys: a run's keys are created, given their
 * retention and dropped one by one (a one-task run's five PEXPIREs alone took
 * about 7 of its scripts' 53 µs of Redis time).
 *
 * A record's fields:
 *   s  status: P pending, Q queued, R running, T retrying, S succeeded,
 *      F failed, C cancelled, K skipped
 *   a  attempt (0 before the first start)   w  worker id
 *   l  lease nonce   k  BullMQ lock token   le lease deadline (ms)
 *   qt queued / st started / ft finished / na next attempt (ms)
 *   e  last error {t, m, d}   pg progress (JSON text)
 */

/** The lines of {@link PRELUDE} that announce a run's new events on its pub/sub channel. */
const PUBLISH_FINAL = "redis.call('PUBLISH', EV, seq .. 'f')";
const PUBLISH_LINE = "redis.call('PUBLISH', EV, seq)";
/** The line of {@link PRELUDE} that announces a run's end on its workflow's channel. */
const ANNOUNCE_LINE = "announceFinish(pending[#pending])";

/**
 * A step script as it runs on a Redis Cluster: new events announced with SPUBLISH (sharded pub/sub,
 * Redis 7: the message stays on the nodes of the run's slot) instead of PUBLISH, which a Cluster
 * sends to every node. A run's end is still announced on its workflow's channel with PUBLISH: that
 * channel is in another slot, where a script may not SPUBLISH, and one message per finished run
 * sent to every node is what lets a stream follow a whole workflow (see FinishHub).
 */
export function withShardedPublish(lua: string): string {
  return lua
    .replace(PUBLISH_FINAL, PUBLISH_FINAL.replace("'PUBLISH'", "'SPUBLISH'"))
    .replace(PUBLISH_LINE, PUBLISH_LINE.replace("'PUBLISH'", "'SPUBLISH'"));
}

export const PRELUDE = `
local RUN, TASKS, EV
-- The run's last sequence (false until read), the events this call appends to the run (written by
-- notify()), the fields of the run's hash it changed (written by notify() too, with the sequence), and
-- the run's status as this call left it (false until read).
local seq, pending, runSet, rs = false, {}, {}, false
-- Whether this call finished the run (its RUN_FINISHED event is among the pending ones).
local fin = false
-- Makes the r-th run of the call (KEYS[3r-2..3r]) the one the functions below work on.
local function useRun(r)
  local b = 3 * (r - 1)
  RUN, TASKS, EV = KEYS[b + 1], KEYS[b + 2], KEYS[b + 3]
  seq, pending, runSet, rs, fin = false, {}, {}, false, false
end
useRun(1)
-- Sends 'HSET key field value...' or 'RPUSH key value...' for a list of arguments, in commands of at
-- most 1,000 arguments (Lua's unpack has a bounded stack).
local function chunked(cmd, key, list)
  for i = 1, #list, 1000 do
    redis.call(cmd, key, unpack(list, i, math.min(i + 999, #list)))
  end
end
local function emit(now, ...)
  seq = (seq or tonumber(redis.call('HGET', RUN, 'seq'))) + 1
  pending[#pending + 1] = cjson.encode({seq, now, ...})
end
-- Announces that the run finished on its workflow's channel, "<prefix>:wf:{<workflow>}:done" (the
-- run key is "<prefix>:run:{<id>}"), as "<id> <sequence of RUN_FINISHED>", followed by " <the event's
-- entry>" when it is at most 4 KiB (its listeners need not read it then): the channel WatchRuns
-- streams that follow runs, by id or by workflow, listen on. A channel is not a key: this touches no
-- other slot.
local function announceFinish(entry)
  local f = redis.call('HMGET', RUN, 'id', 'wf')
  local id, wf = f[1] or runSet.id, f[2] or runSet.wf
  if not id or not wf then return end
  local prefix = string.sub(RUN, 1, #RUN - #id - 7)
  local message = id .. ' ' .. seq
  if #entry <= 4096 then message = message .. ' ' .. entry end
  redis.call('PUBLISH', prefix .. ':wf:{' .. wf .. '}:done', message)
end
-- Appends the run's pending events, writes the fields of its hash this call changed with its last
-- sequence, and publishes that sequence (followed by "f" when the run finished): every script calls
-- it, once per run, after its last emit.
local function notify()
  local fields = {}
  for f, v in pairs(runSet) do
    fields[#fields + 1] = f
    fields[#fields + 1] = v
  end
  if #pending > 0 then
    chunked('RPUSH', EV, pending)
    fields[#fields + 1] = 'seq'
    fields[#fields + 1] = seq
  end
  if #fields > 0 then redis.call('HSET', RUN, unpack(fields)) end
  if #pending > 0 then
    if fin then
      ${PUBLISH_FINAL}
      ${ANNOUNCE_LINE}
    else
      ${PUBLISH_LINE}
    end
  end
  pending, runSet, fin = {}, {}, false
end
local function expireAll(ms)
  redis.call('PEXPIRE', RUN, ms); redis.call('PEXPIRE', TASKS, ms); redis.call('PEXPIRE', EV, ms)
end
local function getTask(id)
  local raw = redis.call('HGET', TASKS, id)
  if raw then return cjson.decode(raw) end
  return nil
end
local function putTask(id, t) redis.call('HSET', TASKS, id, cjson.encode(t)) end
local function errJson(t) if t.e then return cjson.encode(t.e) end return '' end
-- A lease argument is "nonce" or "nonce|owner" (the token that took the lease).
local function splitLease(s)
  local i = string.find(s, '|', 1, true)
  if i then return string.sub(s, 1, i - 1), string.sub(s, i + 1) end
  return s, ''
end
-- Settles every task that is not final when the run ends: waiting tasks take
-- waitStatus (K skipped or C cancelled), running ones C. Returns "id|token"
-- entries so the caller can drop their BullMQ jobs (token empty: not locked).
local function settleAll(now, waitStatus, runStatus, msg)
  local jobs = {}
  local waitEvent = 8
  if waitStatus == 'C' then waitEvent = 7 end
  -- The field names first, then the records 1,000 at a time: the hash also holds the outputs, which
  -- this never needs to copy.
  local ids, recorded, counted = {}, {}, {}
  for _, f in ipairs(redis.call('HKEYS', TASKS)) do
    local kind = string.sub(f, 1, 2)
    if kind == 'd:' then
      counted[#counted + 1] = string.sub(f, 3)
    elseif kind ~= 'o:' and kind ~= 'h:' then
      ids[#ids + 1] = f
      recorded[f] = true
    end
  end
  for i = 1, #ids, 1000 do
    local last = math.min(i + 999, #ids)
    local raws = redis.call('HMGET', TASKS, unpack(ids, i, last))
    for j = i, last do
      local id = ids[j]
      local t = cjson.decode(raws[j - i + 1])
      if t.s == 'Q' or t.s == 'T' then
        t.s = waitStatus; t.ft = now; t.na = nil
        putTask(id, t)
        emit(now, 'ty', waitEvent, 'tk', id, 'a', t.a, 'rs', runStatus, 'm', msg)
        jobs[#jobs + 1] = id .. '|'
      elseif t.s == 'R' then
        t.s = 'C'; t.ft = now
        putTask(id, t)
        emit(now, 'ty', 7, 'tk', id, 'a', t.a, 'rs', runStatus, 'm', msg)
        jobs[#jobs + 1] = id .. '|' .. (t.k or '')
      end
    end
  end
  -- Tasks with parents that never became ready have a counter and no record.
  for _, id in ipairs(counted) do
    if not recorded[id] then
      putTask(id, { s = waitStatus, a = 0, ft = now })
      emit(now, 'ty', waitEvent, 'tk', id, 'a', 0, 'rs', runStatus, 'm', msg)
    end
  end
  return jobs
end
-- outBytes: the size of an output over the limit, left unbuilt (see runOutput).
local function finishRun(now, status, output, err, retention, outBytes)
  rs = status
  fin = true
  runSet.s = status; runSet.ft = now
  if output then runSet.out = output end
  if err then runSet.err = err end
  if outBytes then runSet.oz = outBytes end
  if output then
    emit(now, 'ty', 10, 'rs', status, 'o', output)
  elseif outBytes then
    emit(now, 'ty', 10, 'rs', status, 'oz', outBytes)
  else
    emit(now, 'ty', 10, 'rs', status, 'm', err or '')
  end
  expireAll(retention)
end
-- The run's output: the object of its leaves' outputs (ARGV[from..from+n-1]) keyed by id, or, when
-- its size (measured first, HSTRLEN) is over limit bytes, nil and that size: it is never built.
-- knownId's output is knownOutput (a completion's own output, not yet readable in the hash).
local function runOutput(from, n, limit, knownId, knownOutput)
  local size = 1
  for i = from, from + n - 1 do
    local leaf = ARGV[i]
    local bytes
    if leaf == knownId then bytes = #knownOutput else bytes = redis.call('HSTRLEN', TASKS, 'o:' .. leaf) end
    if bytes == 0 then bytes = 4 end
    size = size + #cjson.encode(leaf) + 2 + bytes
  end
  if size > limit then return nil, size end
  local parts = {}
  for i = from, from + n - 1 do
    local leaf = ARGV[i]
    local value = knownOutput
    if leaf ~= knownId then value = redis.call('HGET', TASKS, 'o:' .. leaf) or 'null' end
    parts[#parts + 1] = cjson.encode(leaf) .. ':' .. value
  end
  return '{' .. table.concat(parts, ',') .. '}', nil
end
`;

/**
 * Runs the steps of every run of a batched script: `step(a)` handles the step
 * whose arguments start at ARGV[a] and returns its reply and where the next
 * step starts. Each run's reply is {first, reply...}, where first is what
 * `runFirst()` returns once the run's steps are done ('' unless defined).
 */
export const BATCH_LOOP = `
local result = {}
local a = 2
for r = 1, tonumber(ARGV[1]) do
  useRun(r)
  beginRun()
  local replies = {''}
  local count = tonumber(ARGV[a])
  a = a + 1
  for j = 1, count do
    replies[j + 1], a = step(a)
  end
  notify()
  replies[1] = runFirst()
  result[r] = replies
end
return result
`;

/**
 * Creates runs (batched). A step's ARGV: runId, workflow, version, input, now,
 * idempotencyKey, scheduleId, fireTime ('' and '' unless a schedule starts
 * the run), taskCount, then taskId, parentCount for each task.
 * A step's reply is 1 when it created the run, 0 when the run already existed.
 * A new run's task records, counters and first events (RUN_STARTED, then
 * TASK_QUEUED for each task without parents) are written with one command per
 * key (per 1,000 entries), whatever the number of tasks.
 */
export const TRIGGER = `${PRELUDE}
-- Whether the run exists (steps of one run after the first find it created: its hash is written by
-- notify(), after them).
local exists
local function beginRun() exists = redis.call('EXISTS', RUN) == 1 end
local function runFirst() return '' end
local function step(a)
  local n = tonumber(ARGV[a + 8])
  local nextA = a + 9 + 2 * n
  if exists then return 0, nextA end
  exists = true
  local now = tonumber(ARGV[a + 4])
  -- A new run: its events start at 1.
  seq = 0
  emit(now, 'ty', 1, 'rs', 'R')
  local entries = {}
  local record = cjson.encode({ s = 'Q', a = 0, qt = now })
  for i = 0, n - 1 do
    local id = ARGV[a + 9 + 2 * i]
    local parents = tonumber(ARGV[a + 10 + 2 * i])
    if parents == 0 then
      entries[#entries + 1] = id
      entries[#entries + 1] = record
      emit(now, 'ty', 2, 'tk', id, 'a', 0, 'rs', 'R')
    else
      entries[#entries + 1] = 'd:' .. id
      entries[#entries + 1] = parents
    end
  end
  -- notify() writes these with the sequence, in one HSET.
  runSet = { id = ARGV[a], wf = ARGV[a + 1], v = ARGV[a + 2], s = 'R', ['in'] = ARGV[a + 3], ct = now,
    idem = ARGV[a + 5], rem = n, nf = 0 }
  if ARGV[a + 6] ~= '' then runSet.sc = ARGV[a + 6]; runSet.sft = ARGV[a + 7] end
  chunked('HSET', TASKS, entries)
  return 1, nextA
end
${BATCH_LOOP}`;

/**
 * Cancels a run. ARGV: reason, now, retentionMs, finalStatus ('C' cancelled
 * or 'X' timed out), resume count ('' any; else only that round of the run:
 * a run timeout armed before a resume must not end the round after it).
 * Returns {'cancelled', job...} | {'final'} (already over, or another round)
 * | {'notfound'}.
 */
export const CANCEL = `${PRELUDE}
rs = redis.call('HGET', RUN, 's')
if not rs then return {'notfound'} end
if rs ~= 'R' then return {'final'} end
if ARGV[5] ~= '' and (redis.call('HGET', RUN, 'gen') or '0') ~= ARGV[5] then return {'final'} end
local now = tonumber(ARGV[2])
local jobs = settleAll(now, 'C', ARGV[4], ARGV[1])
finishRun(now, ARGV[4], nil, ARGV[1], tonumber(ARGV[3]))
notify()
local result = {'cancelled'}
for _, j in ipairs(jobs) do result[#result + 1] = j end
return result
`;

/**
 * Finishes a run whose tasks all succeeded, with the leaves' outputs as its
 * output. ARGV: now, retentionMs, leafCount, leaves..., outputLimit (an output
 * over it is not built). Returns 1 when it finished the run, 0 when there was
 * nothing to do (already finished).
 */
export const FINISH = `${PRELUDE}
if redis.call('HGET', RUN, 's') ~= 'R' or tonumber(redis.call('HGET', RUN, 'rem')) ~= 0 then return 0 end
if tonumber(redis.call('HGET', RUN, 'nf')) > 0 then
  finishRun(tonumber(ARGV[1]), 'F', nil, redis.call('HGET', RUN, 'err'), tonumber(ARGV[2]))
  notify()
  return 1
end
local nl = tonumber(ARGV[3])
local out, outBytes = runOutput(4, nl, tonumber(ARGV[4 + nl]), nil, nil)
finishRun(tonumber(ARGV[1]), 'S', out, nil, tonumber(ARGV[2]), outBytes)
notify()
return 1
`;

/**
 * Records why a queued task has not started (a rate limit), with a
 * TASK_WAITING event when the reason changes. ARGV: taskId, reason, now.
 */
export const WAIT = `${PRELUDE}
local t = getTask(ARGV[1])
if not t or (t.s ~= 'Q' and t.s ~= 'T') or t.wr == ARGV[2] then return 0 end
t.wr = ARGV[2]
putTask(ARGV[1], t)
emit(tonumber(ARGV[3]), 'ty', 9, 'tk', ARGV[1], 'a', t.a, 'rs', 'R', 'm', ARGV[2])
notify()
return 1
`;
