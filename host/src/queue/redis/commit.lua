-- Store one job transition computed by the host (queue/transition.rs), if
-- the job has not changed since it was read (version compare-and-set), and
-- the user is under their running cap for a claim. Updates the job, the
-- index sets, the user's counters and publishes the event, all or nothing.
-- KEYS: 1 job hash, 2 user hash, 3 queued zset, 4 active zset, 5 done zset,
--       6 events channel
-- ARGV: 1 expected version, 2 new json, 3 from state, 4 to state,
--       5 job id, 6 queued score, 7 lease expiry ms (or ''), 8 claim (0/1),
--       9 d_pending, 10 d_running, 11 d_done, 12 d_gpu, 13 dispatched_at (or ''),
--       14 updated_at ms, 15 event json (or '')
local v = redis.call('HGET', KEYS[1], 'v')
if v == false then
  return {'not_found'}
end
if v ~= ARGV[1] then
  return {'conflict'}
end
if ARGV[8] == '1' then
  local running = tonumber(redis.call('HGET', KEYS[2], 'running') or '0')
  local max_running = tonumber(redis.call('HGET', KEYS[2], 'max_running') or '0')
  if running >= max_running then
    return {'at_running_cap', tostring(running), tostring(max_running)}
  end
end
local id = ARGV[5]
local from, to = ARGV[3], ARGV[4]
local active = {leased = true, dispatched = true, running = true}
local terminal = {succeeded = true, failed = true, cancelled = true, dead = true}
redis.call('HSET', KEYS[1], 'v', tonumber(v) + 1, 'json', ARGV[2], 'state', to)
if from == 'queued' and to ~= 'queued' then
  redis.call('ZREM', KEYS[3], id)
end
if to == 'queued' then
  redis.call('ZADD', KEYS[3], ARGV[6], id)
end
if active[from] and not active[to] then
  redis.call('ZREM', KEYS[4], id)
end
if active[to] and ARGV[7] ~= '' then
  redis.call('ZADD', KEYS[4], ARGV[7], id)
end
if terminal[to] then
  redis.call('ZADD', KEYS[5], ARGV[14], id)
end
if ARGV[9] ~= '0' then redis.call('HINCRBY', KEYS[2], 'pending', ARGV[9]) end
if ARGV[10] ~= '0' then redis.call('HINCRBY', KEYS[2], 'running', ARGV[10]) end
if ARGV[11] ~= '0' then redis.call('HINCRBY', KEYS[2], 'jobs_done', ARGV[11]) end
if ARGV[12] ~= '0' then redis.call('HINCRBYFLOAT', KEYS[2], 'gpu_seconds', ARGV[12]) end
if ARGV[13] ~= '' then redis.call('HSET', KEYS[2], 'last_dispatched_at_ms', ARGV[13]) end
if ARGV[15] ~= '' then
  redis.call('PUBLISH', KEYS[6], ARGV[15])
end
return {'ok'}
