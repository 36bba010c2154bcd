-- Reads one message session.
-- KEYS[1]  set of counter keys already charged once for the message
-- KEYS[2]  hash: counter key -> "seq|group|limit|period_ms|bucket_ms|label" (END-OF-MESSAGE)
return {redis.call('SMEMBERS', KEYS[1]), redis.call('HGETALL', KEYS[2])}
