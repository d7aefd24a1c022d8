-- Take or keep the dispatcher leadership.
-- KEYS: 1 leader key
-- ARGV: 1 host id, 2 ttl ms
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
