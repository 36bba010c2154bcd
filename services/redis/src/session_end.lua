-- Forgets one message session (after END-OF-MESSAGE).
return redis.call('DEL', KEYS[1], KEYS[2])
