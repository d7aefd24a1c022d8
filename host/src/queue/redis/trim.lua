-- Remove terminal jobs last changed before a time, up to a batch size.
-- KEYS: 1 done zset
-- ARGV: 1 before ms (exclusive), 2 key prefix, 3 batch size
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  local job = ARGV[2] .. 'job:' .. id
  local user = redis.call('HGET', job, 'user')
  local prompt = redis.call('HGET', job, 'prompt')
  if user then redis.call('ZREM', ARGV[2] .. 'user:' .. user .. ':jobs', id) end
  if prompt then redis.call('DEL', ARGV[2] .. 'prompt:' .. prompt) end
  redis.call('DEL', job, ARGV[2] .. 'payload:' .. id)
  redis.call('ZREM', KEYS[1], id)
end
return #ids
