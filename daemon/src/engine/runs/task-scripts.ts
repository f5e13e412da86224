import { BATCH_LOOP, PRELUDE } from "./run-scripts.js";

// The steps of a task under a lease, as Lua scripts: what every step of a run shares (its keys, its
// events, batching, the task record) is described in run-scripts.ts.

/**
 * Hands queued tasks to workers (batched). A step's ARGV: taskId,
 * nonce[|owner], lockToken, workerId, now, leaseMs, startToCloseMs (0: none),
 * parentCount, parentIds..., then the assignment's budget: limit, group,
 * left, base. The lease never outlives the attempt's start-to-close deadline
 * (sc). A run's reply is {runInput, reply...}, one reply per task in order:
 * {'ok', attempt, '', leaseDeadline, parentOutput...} | {'gone'} (drop the job)
 * | {'done'} (already succeeded: repair) | {'delay', notBefore}
 * | {'lost', attempt, nonce, startToCloseDeadline} (the previous lease of a
 * running task was lost) | {'big', attempt, '', leaseDeadline, inputsBytes,
 * runInputBytes} | {'full', inputsBytes}. runInput is '' when no task of the
 * run started with 'ok'.
 *
 * The budget keeps an assignment, and the answer of one poll, within the
 * answer limit without reading what would not fit: inputsBytes, the sizes
 * of the run input and of the parents' outputs as stored (HSTRLEN), is
 * compared with `limit` before anything is read. Over it, the task starts
 * without its inputs being read ('big': the caller fails the attempt, not
 * retryable). Within it, the assignment costs inputsBytes + base out of what
 * its `group` (one poll) has `left` in this call; when that does not cover
 * it, nothing changes ('full': the job goes back to its queue).
 */
export const START = `${PRELUDE}
local input, inputBytes, started
-- Bytes each poll (group) may still take in this call.
local budgets = {}
local function beginRun()
  local fields = redis.call('HMGET', RUN, 's', 'seq')
  rs = fields[1]
  seq = tonumber(fields[2]) or false
  inputBytes = redis.call('HSTRLEN', RUN, 'in')
  input = false
  started = false
end
local function runFirst()
  if started then return input end
  return ''
end
local function step(a)
  local id, now, np = ARGV[a], tonumber(ARGV[a + 4]), tonumber(ARGV[a + 7])
  local b = a + 8 + np
  local nextA = b + 4
  local t = nil
  if rs == 'R' then t = getTask(id) end
  if not t then return {'gone'}, nextA end
  if t.s == 'S' then return {'done'}, nextA end
  if t.s == 'R' then return {'lost', t.a, t.l, t.sc or 0}, nextA end
  if t.s ~= 'Q' and t.s ~= 'T' then return {'gone'}, nextA end
  if t.s == 'T' and t.na and t.na > now + 5 then return {'delay', t.na}, nextA end
  local size = inputBytes
  for i = 1, np do size = size + redis.call('HSTRLEN', TASKS, 'o:' .. ARGV[a + 7 + i]) end
  local big = size > tonumber(ARGV[b])
  if not big then
    local g = ARGV[b + 1]
    local left = budgets[g] or tonumber(ARGV[b + 2])
    local cost = size + tonumber(ARGV[b + 3])
    if cost > left then return {'full', size}, nextA end
    budgets[g] = left - cost
  end
  local nonce, owner = splitLease(ARGV[a + 1])
  t.s = 'R'; t.a = t.a + 1; t.l = nonce; t.k = ARGV[a + 2]; t.w = ARGV[a + 3]
  if owner ~= '' then t.o = owner else t.o = nil end
  t.st = now; t.le = now + tonumber(ARGV[a + 5]); t.na = nil; t.wr = nil; t.pg = nil; t.sc = nil
  if tonumber(ARGV[a + 6]) > 0 then
    t.sc = now + tonumber(ARGV[a + 6])
    if t.le > t.sc then t.le = t.sc end
  end
  putTask(id, t)
  emit(now, 'ty', 3, 'tk', id, 'a', t.a, 'rs', 'R', 'w', ARGV[a + 3])
  if big then return {'big', t.a, '', t.le, size, inputBytes}, nextA end
  if not started then
    input = redis.call('HGET', RUN, 'in') or ''
    started = true
  end
  local reply = {'ok', t.a, '', t.le}
  for i = 1, np do
    reply[#reply + 1] = redis.call('HGET', TASKS, 'o:' .. ARGV[a + 7 + i]) or 'null'
  end
  return reply, nextA
end
${BATCH_LOOP}`;

/**
 * Gives a task back to its queue after a handover that did not reach the
 * worker; the attempt is not counted. ARGV: taskId, attempt, nonce, now.
 */
export const RELEASE = `${PRELUDE}
local t = getTask(ARGV[1])
if not t or t.s ~= 'R' or t.l ~= ARGV[3] or t.a ~= tonumber(ARGV[2]) then return 0 end
local now = tonumber(ARGV[4])
t.s = 'Q'; t.a = t.a - 1; t.l = nil; t.k = nil; t.w = nil; t.le = nil; t.st = nil
putTask(ARGV[1], t)
emit(now, 'ty', 2, 'tk', ARGV[1], 'a', t.a, 'rs', 'R', 'm', 'handover to the worker did not complete')
notify()
return 1
`;

/**
 * Shared lease check: returns nil when the lease holds, else a reply. Then attemptOver(t) says why
 * the attempt of a lease that matches has ended by itself (completed, failed, expired), so that
 * every step answers a stale lease alike; nil while it runs, or when it was cancelled with its run
 * (the step answers 'cancel' then).
 */
const LEASE_CHECK = `
local function checkLease(t, attempt, arg)
  if not t then return {'notfound'} end
  local nonce, owner = splitLease(arg)
  if t.l ~= nonce or t.a ~= attempt then
    if attempt > t.a then return {'notfound'} end
    return {'stale', 'the task was reassigned to another lease'}
  end
  -- '*': the daemon itself (an expired lease), which may end any lease.
  if owner ~= '*' and (t.o or '') ~= owner then return {'denied'} end
  return nil
end
local function attemptOver(t)
  if t.s == 'S' then return 'the task completed' end
  if t.s ~= 'T' and t.s ~= 'F' then return nil end
  local kind = t.e and t.e.t
  local cause = nil
  if kind == 'HeartbeatTimeout' then cause = 'the lease expired'
  elseif kind == 'StartToCloseTimeout' then cause = 'the start-to-close timeout expired' end
  if t.s == 'F' then
    if cause then return cause .. ' and the task failed' end
    return 'the task failed'
  end
  return (cause or 'the attempt failed') .. '; the task will be retried'
end
`;

/**
 * Extends a lease. ARGV: taskId, attempt, nonce, now, leaseMs, progress.
 * Returns {'ok', token, leaseDeadline} | {'cancel', token} (the run was
 * cancelled, timed out or failed while the task ran) | {'stale', why} |
 * {'notfound'}.
 */
export const HEARTBEAT = `${PRELUDE}${LEASE_CHECK}
rs = redis.call('HGET', RUN, 's')
if not rs then return {'notfound'} end
local t = getTask(ARGV[1])
local bad = checkLease(t, tonumber(ARGV[2]), ARGV[3])
if bad then return bad end
local over = attemptOver(t)
if over then return {'stale', over} end
if t.s == 'C' or rs ~= 'R' then return {'cancel', t.k or ''} end
if t.s ~= 'R' then return {'stale', 'the attempt already ended'} end
local now = tonumber(ARGV[4])
if t.le < now then return {'stale', 'the lease expired'} end
if t.sc and now >= t.sc then return {'stale', 'the start-to-close timeout expired'} end
t.le = now + tonumber(ARGV[5])
if t.sc and t.le > t.sc then t.le = t.sc end
if ARGV[6] ~= '' then t.pg = ARGV[6] end
putTask(ARGV[1], t)
return {'ok', t.k, t.le}
`;

/**
 * Records tasks' successes and queues the children they made ready (batched).
 * A completion's ARGV: taskId, attempt, nonce, output, now, retentionMs,
 * childCount, children..., then '-' or leafCount, leaves..., outputLimit
 * (small workflows pass their leaves so that the step that completes the last
 * task also finishes the run; an output over outputLimit bytes is not built). A run's reply is {'', reply...}, one reply per completion,
 * in order:
 * {'ok'|'dup'|'last'|'done', token, readyChildren...} | {'cancel', token}
 * | {'stale', why} | {'notfound'}. 'dup' repeats an already recorded
 * completion (its ready children are returned again so that a repeated step
 * re-enqueues them idempotently); 'last' means every task is now final and
 * the run must be finished with FINISH; 'done' means the run just finished.
 */
export const COMPLETE = `${PRELUDE}${LEASE_CHECK}
-- The run's counters, read once per run and written back by notify().
local rem, nf
local function beginRun()
  local fields = redis.call('HMGET', RUN, 's', 'seq', 'rem', 'nf')
  rs = fields[1]
  seq = tonumber(fields[2]) or false
  rem, nf = tonumber(fields[3]), tonumber(fields[4])
end
local function runFirst() return '' end
-- One completion whose arguments start at ARGV[a]; returns its reply and where the next one starts.
local function step(a)
  local id = ARGV[a]
  local nc = tonumber(ARGV[a + 6])
  local leaves = ARGV[a + 7 + nc]
  local nextA = a + 8 + nc
  if leaves ~= '-' then nextA = nextA + tonumber(leaves) + 1 end
  if not rs then return {'notfound'}, nextA end
  local t = getTask(id)
  local bad = checkLease(t, tonumber(ARGV[a + 1]), ARGV[a + 2])
  if bad then return bad, nextA end
  if t.s == 'S' then
    local ready = {'dup', t.k or ''}
    for i = 1, nc do
      local c = getTask(ARGV[a + 6 + i])
      if c and c.s == 'Q' then ready[#ready + 1] = ARGV[a + 6 + i] end
    end
    return ready, nextA
  end
  local over = attemptOver(t)
  if over then return {'stale', over}, nextA end
  if t.s == 'C' or rs ~= 'R' then return {'cancel', t.k or ''}, nextA end
  if t.s ~= 'R' then return {'stale', 'the attempt already ended'}, nextA end
  local now = tonumber(ARGV[a + 4])
  if t.le < now then return {'stale', 'the lease expired'}, nextA end
  local output = ARGV[a + 3]
  local token = t.k or ''
  t.s = 'S'; t.ft = now; t.pg = nil
  redis.call('HSET', TASKS, id, cjson.encode(t), 'o:' .. id, output)
  emit(now, 'ty', 5, 'tk', id, 'a', t.a, 'rs', 'R', 'o', output)
  local ready = {'ok', token}
  for i = 1, nc do
    local c = ARGV[a + 6 + i]
    if redis.call('HINCRBY', TASKS, 'd:' .. c, -1) == 0 and redis.call('HEXISTS', TASKS, c) == 0 then
      putTask(c, { s = 'Q', a = 0, qt = now })
      emit(now, 'ty', 2, 'tk', c, 'a', 0, 'rs', 'R')
      ready[#ready + 1] = c
    end
  end
  rem = rem - 1
  runSet.rem = rem
  if rem == 0 then
    local retention = tonumber(ARGV[a + 5])
    if nf > 0 then
      finishRun(now, 'F', nil, redis.call('HGET', RUN, 'err'), retention)
      ready[1] = 'done'
    elseif leaves ~= '-' then
      -- The caller passed the leaves (small workflows): finish here, in the same step.
      local nl = tonumber(leaves)
      local out, outBytes = runOutput(a + 8 + nc, nl, tonumber(ARGV[a + 8 + nc + nl]), id, output)
      finishRun(now, 'S', out, nil, retention, outBytes)
      ready[1] = 'done'
    else
      ready[1] = 'last'
    end
  end
  return ready, nextA
end
${BATCH_LOOP}`;

/**
 * Records a failed attempt. ARGV: taskId, attempt, nonce, errType, errMessage,
 * errDetails, mode ('retry' | 'final'), nextAttemptMs, now, retentionMs,
 * continueOnFailure ('1' | '0'), deadline ('1': refuse an expired lease, '0': any lease, '2': only
 * an expired lease, else reply {'alive', leaseDeadline}), the message and details as kept in the
 * attempt's history (cut short), queue, handler, scheduleToStartMs, descendantCount,
 * descendants... With nonce '*' (a timer: schedule-to-start), the task must
 * still be queued and never started (attempt 0), else the call is a no-op; a
 * timer armed for an earlier queueing (before a resume) answers {'early', due}
 * while the task's own deadline has not come.
 * Every attempt's error is kept under h:<attempt>:<taskId>; a task that fails
 * for good gets its dead-letter entry x:<taskId> in the run's hash, in the
 * same step (so never a failure without its entry, nor an entry twice).
 * Returns {'retry', token} | {'failed', token, job...} (the task failed for
 * good; job entries "id|token" name the BullMQ jobs to drop) | {'cancel',
 * token} | {'stale', why} | {'notfound'} | {'noop'} | {'early', due}.
 */
export const FAIL = `${PRELUDE}${LEASE_CHECK}
local id = ARGV[1]
rs = redis.call('HGET', RUN, 's')
if not rs then return {'notfound'} end
local t = getTask(id)
local now = tonumber(ARGV[9])
if ARGV[3] == '*' then
  if not t or t.s ~= 'Q' or t.a ~= 0 or rs ~= 'R' then return {'noop'} end
  local due = (t.qt or 0) + tonumber(ARGV[17])
  if due > now + 5 then return {'early', due} end
else
  local bad = checkLease(t, tonumber(ARGV[2]), ARGV[3])
  if bad then return bad end
  local over = attemptOver(t)
  if over then return {'stale', over} end
  if t.s == 'C' or rs ~= 'R' then return {'cancel', t.k or ''} end
  if t.s ~= 'R' then return {'stale', 'the attempt already ended'} end
  if ARGV[12] == '1' and t.le < now then return {'stale', 'the lease expired'} end
  if ARGV[12] == '2' and t.le > now then return {'alive', t.le} end
end
local token = t.k or ''
t.e = { t = ARGV[4], m = ARGV[5], d = ARGV[6] }
t.pg = nil
redis.call('HSET', TASKS, 'h:' .. t.a .. ':' .. id,
  cjson.encode({ t = ARGV[4], m = ARGV[13], d = ARGV[14], at = now, w = t.w or '' }))
if ARGV[7] == 'retry' then
  t.s = 'T'; t.na = tonumber(ARGV[8])
  putTask(id, t)
  emit(now, 'ty', 4, 'tk', id, 'a', t.a, 'rs', 'R', 'e', errJson(t), 'na', t.na)
  notify()
  return {'retry', token}
end
t.s = 'F'; t.ft = now
putTask(id, t)
redis.call('HSET', RUN, 'x:' .. id, cjson.encode({ g = tonumber(redis.call('HGET', RUN, 'gen') or '0'),
  t = now, q = ARGV[15], h = ARGV[16], a = t.a, et = ARGV[4] }))
emit(now, 'ty', 6, 'tk', id, 'a', t.a, 'rs', 'R', 'e', errJson(t))
local reason = 'task "' .. id .. '" failed: ' .. ARGV[4] .. ': ' .. ARGV[5]
local result = {'failed', token}
if ARGV[11] == '1' then
  redis.call('HINCRBY', RUN, 'nf', 1)
  if redis.call('HEXISTS', RUN, 'err') == 0 then redis.call('HSET', RUN, 'err', reason) end
  local rem = redis.call('HINCRBY', RUN, 'rem', -1)
  local nd = tonumber(ARGV[18])
  for i = 1, nd do
    local d = ARGV[18 + i]
    if redis.call('HEXISTS', TASKS, d) == 0 then
      putTask(d, { s = 'K', a = 0, ft = now })
      emit(now, 'ty', 8, 'tk', d, 'a', 0, 'rs', 'R', 'm', 'parent task "' .. id .. '" failed')
      rem = redis.call('HINCRBY', RUN, 'rem', -1)
    end
  end
  if rem == 0 then finishRun(now, 'F', nil, redis.call('HGET', RUN, 'err'), tonumber(ARGV[10])) end
else
  local jobs = settleAll(now, 'K', 'F', reason)
  for _, j in ipairs(jobs) do result[#result + 1] = j end
  finishRun(now, 'F', nil, reason, tonumber(ARGV[10]))
end
notify()
return result
`;
