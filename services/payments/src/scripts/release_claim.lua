-- Gives back an idempotency key claimed by a request that changed nothing,
-- only if it still holds that request's fingerprint.
-- KEYS[1] claim   ARGV[1] fingerprint. Returns 1 when released.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
