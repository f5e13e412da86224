import { PRELUDE } from "./run-scripts.js";

// The step that resumes a finished run, as a Lua script on the run's keys (see run-scripts.ts for
// what every step of a run shares: its keys, its events, the task records).

/**
 * Resumes a run that ended FAILED, CANCELLED or TIMED_OUT, under the same id
 * and workflow version. ARGV: expected resume count ('' any), idempotency key
 * ('' none), now, message (of the RUN_RESUMED event), taskCount, then for each
 * task that runs again: taskId, parents ('-' for a task without parents, else
 * how many of its parents have not succeeded, 0 to queue it now).
 *
 * The caller plans the tasks from the run's records read beforehand: a
 * finished run's records no longer change, so the plan holds while the run's
 * resume count is the one it read (a resume changes it, and this step then
 * answers 'raced'). Each task named goes back to PENDING (its record dropped,
 * its parent counter set) or to QUEUED with attempt 0; its output, the errors
 * of its attempts and its dead-letter entry go. The run goes back to RUNNING
 * with its counters, error and output reset, its keys no longer expire, and
 * RUN_RESUMED then one TASK_QUEUED per queued task are appended.
 *
 * Returns {'resumed', resumeCount, queuedCount, queued..., entry...} where each
 * entry is "taskId|x" (x: the dead-letter entry removed, for its indexes)
 * | {'dup', resumeCount} (this idempotency key resumed the run already)
 * | {'raced', resumeCount} (the expected finish was resumed by another call)
 * | {'running', resumeCount} | {'succeeded', resumeCount} | {'notfound'}.
 */
export const RESUME = `${PRELUDE}
local head = redis.call('HMGET', RUN, 's', 'gen')
rs = head[1]
if not rs then return {'notfound'} end
local gen = tonumber(head[2] or '0')
local key = ARGV[2]
if key ~= '' and redis.call('HEXISTS', RUN, 'ri:' .. key) == 1 then return {'dup', gen} end
if ARGV[1] ~= '' and tonumber(ARGV[1]) ~= gen then return {'raced', gen} end
if rs == 'R' then return {'running', gen} end
if rs == 'S' then return {'succeeded', gen} end
local now = tonumber(ARGV[3])
local n = tonumber(ARGV[5])
gen = gen + 1
-- Dead-letter entries: every task that failed for good runs again, so each entry goes.
local entries, xfields = {}, {}
for _, f in ipairs(redis.call('HKEYS', RUN)) do
  if string.sub(f, 1, 2) == 'x:' then
    xfields[#xfields + 1] = f
    entries[#entries + 1] = string.sub(f, 3) .. '|' .. redis.call('HGET', RUN, f)
  end
end
xfields[#xfields + 1] = 'err'
xfields[#xfields + 1] = 'out'
xfields[#xfields + 1] = 'oz'
xfields[#xfields + 1] = 'ft'
chunked('HDEL', RUN, xfields)
seq = tonumber(redis.call('HGET', RUN, 'seq'))
emit(now, 'ty', 11, 'rs', 'R', 'm', ARGV[4])
rs = 'R'
runSet = { s = 'R', gen = gen, rt = now, rem = n, nf = 0 }
if key ~= '' then runSet['ri:' .. key] = gen end
local queued, drop, put = {}, {}, {}
local record = cjson.encode({ s = 'Q', a = 0, qt = now })
for i = 0, n - 1, 1000 do
  local last = math.min(i + 999, n - 1)
  local ids = {}
  for j = i, last do ids[#ids + 1] = ARGV[6 + 2 * j] end
  local raws = redis.call('HMGET', TASKS, unpack(ids))
  for j = i, last do
    local id = ARGV[6 + 2 * j]
    local parents = ARGV[7 + 2 * j]
    local raw = raws[j - i + 1]
    -- The errors of its attempts (0 to its last), and its output.
    if raw then
      local t = cjson.decode(raw)
      for a = 0, t.a or 0 do drop[#drop + 1] = 'h:' .. a .. ':' .. id end
    end
    drop[#drop + 1] = 'o:' .. id
    if parents == '-' or parents == '0' then
      put[#put + 1] = id
      put[#put + 1] = record
      if parents == '0' then
        put[#put + 1] = 'd:' .. id
        put[#put + 1] = 0
      end
      queued[#queued + 1] = id
      emit(now, 'ty', 2, 'tk', id, 'a', 0, 'rs', 'R')
    else
      drop[#drop + 1] = id
      put[#put + 1] = 'd:' .. id
      put[#put + 1] = tonumber(parents)
    end
  end
  chunked('HDEL', TASKS, drop)
  chunked('HSET', TASKS, put)
  drop, put = {}, {}
end
redis.call('PERSIST', RUN); redis.call('PERSIST', TASKS); redis.call('PERSIST', EV)
notify()
local result = {'resumed', gen, #queued}
for _, id in ipairs(queued) do result[#result + 1] = id end
for _, e in ipairs(entries) do result[#result + 1] = e end
return result
`;
