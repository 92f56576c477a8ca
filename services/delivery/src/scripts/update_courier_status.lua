-- Sets a registered courier's availability and, when given, its location.
--
-- KEYS[1] courier hash
-- ARGV[1] available (0|1)   ARGV[2] latitude ('' to keep)   ARGV[3] longitude
-- ARGV[4] now (unix ms)
--
-- Returns 0 for an unknown courier (nothing is written), 1 otherwise.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'available', ARGV[1], 'updated_at_ms', ARGV[4])
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[1], 'latitude', ARGV[2], 'longitude', ARGV[3])
end
return 1
