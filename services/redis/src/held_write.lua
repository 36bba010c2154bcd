-- One write to the ledger of held messages (held.rs), by the holder of its lock.
--
-- KEYS  lock, messages (hash), version, last id, paces (hash): one slot ({held})
-- ARGV  token, last id, n puts, (id, body) * n, n removes, id * n,
--       n paces, (queue, ms) * n (replacing the stored ones)
--
-- Returns the new version, or an error (nothing written) when the lock is not the
-- caller's any more.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('ERR the held-message ledger lock was lost (held by another server, or expired): nothing written')
end
local i = 2
local last = tonumber(ARGV[i])
i = i + 1
local stored = tonumber(redis.call('GET', KEYS[4]) or '0')
if last > stored then
  redis.call('SET', KEYS[4], ARGV[2])
end
local n = tonumber(ARGV[i])
i = i + 1
for _ = 1, n do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  i = i + 2
end
n = tonumber(ARGV[i])
i = i + 1
for _ = 1, n do
  redis.call('HDEL', KEYS[2], ARGV[i])
  i = i + 1
end
n = tonumber(ARGV[i])
i = i + 1
redis.call('DEL', KEYS[5])
for _ = 1, n do
  redis.call('HSET', KEYS[5], ARGV[i], ARGV[i + 1])
  i = i + 2
end
return redis.call('INCR', KEYS[3])
