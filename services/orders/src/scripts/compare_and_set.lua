-- Writes an order only if nobody else wrote it since it was read.
-- KEYS[1] order hash. ARGV[1] version read (0: the order must not exist yet),
-- ARGV[2] the new record, ARGV[3] milliseconds the order is kept from now
-- (0: for as long as it is open). Returns the new version, or 0 on a
-- conflict.
local version = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if version ~= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'data', ARGV[2], 'version', version + 1)
local keep = tonumber(ARGV[3] or '0')
if keep > 0 then
  redis.call('PEXPIRE', KEYS[1], keep)
end
return version + 1
