-- Enqueue one job atomically: the user must exist and be under their pending
-- cap, the prompt id must be new; then the job, its payload, the indexes and
-- the user's counter are written and the event is published.
-- KEYS: 1 user hash, 2 prompt key, 3 job hash, 4 payload, 5 queued zset,
--       6 user jobs zset, 7 events channel
-- ARGV: 1 job id, 2 job json, 3 queued score, 4 payload, 5 event json,
--       6 user name, 7 prompt id
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'unknown_user'}
end
local pending = tonumber(redis.call('HGET', KEYS[1], 'pending') or '0')
local max_pending = tonumber(redis.call('HGET', KEYS[1], 'max_pending') or '0')
if pending >= max_pending then
  return {'too_many_pending', tostring(pending), tostring(max_pending)}
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX') == false then
  return {'bad_prompt_id'}
end
redis.call('HSET', KEYS[3], 'v', 1, 'json', ARGV[2], 'state', 'queued',
  'user', ARGV[6], 'prompt', ARGV[7])
redis.call('SET', KEYS[4], ARGV[4])
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[6], ARGV[1], ARGV[1])
redis.call('HINCRBY', KEYS[1], 'pending', 1)
redis.call('PUBLISH', KEYS[7], ARGV[5])
return {'ok'}
