-- Adds to one message session; the session's keys expire ARGV[1] ms after it was created.
-- KEYS[1]  set of counter keys already charged once for the message
-- KEYS[2]  hash: counter key -> "seq|group|limit|period_ms|bucket_ms|label"
-- ARGV[1]  session TTL in ms
-- ARGV[2]  n, the number of charged keys that follow
-- ARGV[3 .. 2+n]  charged counter keys
-- then pairs: counter key, "group|limit|period_ms|bucket_ms|label" (kept if new: first wins)
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then ttl = redis.call('PTTL', KEYS[2]) end
if ttl < 0 then ttl = tonumber(ARGV[1]) end
local n = tonumber(ARGV[2])
for i = 3, 2 + n do
  redis.call('SADD', KEYS[1], ARGV[i])
end
for i = 3 + n, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 0 then
    local seq = redis.call('HLEN', KEYS[2])
    redis.call('HSET', KEYS[2], ARGV[i], string.format('%d', seq) .. '|' .. ARGV[i + 1])
  end
end
for k = 1, 2 do
  if redis.call('EXISTS', KEYS[k]) == 1 then
    redis.call('PEXPIRE', KEYS[k], ttl)
  end
end
return 1
