-- Enqueue one job atomically: the user must exist and be under their pending
-- cap, the prompt id must be new; only then is an id taken from the sequence
-- (so a refused job leaves no gap, as in the embedded store) and the job, its
-- payload, the indexes and the user's counter written, and the event
-- published. The host serialises the job and the event with id 0 as their
-- first field; the script puts the real id there.
-- KEYS: 1 user hash, 2 prompt key, 3 seq, 4 queued zset, 5 events channel
-- ARGV: 1 job json (id 0), 2 queued score without the id, 3 payload,
--       4 event json (id 0), 5 user name, 6 prompt id, 7 key prefix
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'unknown_user'}
end
local pending = tonumber(redis.call('HGET', KEYS[1], 'pending') or '0')
local max_pending = tonumber(redis.call('HGET', KEYS[1], 'max_pending') or '0')
if pending >= max_pending then
  return {'too_many_pending', tostring(pending), tostring(max_pending)}
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return {'bad_prompt_id'}
end
local id = redis.call('INCR', KEYS[3])
local function with_id(json)
  local fixed, n = string.gsub(json, '^{"id":0,', '{"id":' .. id .. ',', 1)
  if n ~= 1 then
    return redis.error_reply('job json must start with {"id":0,')
  end
  return fixed
end
local job = with_id(ARGV[1])
if type(job) == 'table' then return job end
local event = with_id(ARGV[4])
if type(event) == 'table' then return event end
redis.call('SET', KEYS[2], id)
redis.call('HSET', ARGV[7] .. 'job:' .. id, 'v', 1, 'json', job, 'state', 'queued',
  'user', ARGV[5], 'prompt', ARGV[6])
redis.call('SET', ARGV[7] .. 'payload:' .. id, ARGV[3])
redis.call('ZADD', KEYS[4], tonumber(ARGV[2]) + id, id)
redis.call('ZADD', ARGV[7] .. 'user:' .. ARGV[5] .. ':jobs', id, id)
redis.call('HINCRBY', KEYS[1], 'pending', 1)
redis.call('PUBLISH', KEYS[5], event)
return {'ok', tostring(id)}
