-- Register or update a user's limits; counters are kept.
-- KEYS: 1 user hash, 2 users set
-- ARGV: 1 name, 2 max_pending, 3 max_running, 4 priority
redis.call('HSET', KEYS[1], 'name', ARGV[1], 'max_pending', ARGV[2],
  'max_running', ARGV[3], 'priority', ARGV[4])
redis.call('HSETNX', KEYS[1], 'pending', 0)
redis.call('HSETNX', KEYS[1], 'running', 0)
redis.call('HSETNX', KEYS[1], 'jobs_done', 0)
redis.call('HSETNX', KEYS[1], 'gpu_seconds', 0)
redis.call('SADD', KEYS[2], ARGV[1])
return {'ok'}
