-- Registers a courier, or updates the profile of one registered before. Load,
-- availability and the time of first registration survive a re-registration;
-- a re-registration without a location keeps the last one. A new courier
-- needs a location: without one nothing is written.
--
-- KEYS[1] courier hash
-- ARGV[1] name   ARGV[2] home county   ARGV[3] home province   ARGV[4] region
-- ARGV[5] vehicle   ARGV[6] cold chain (0|1)   ARGV[7] capacity
-- ARGV[8] latitude ('' for none)   ARGV[9] longitude   ARGV[10] now (unix ms)
-- ARGV[11] the registering partner ('' while authentication is off)
--
-- Returns {1, the region the courier was in before ('' for a new courier)},
-- {0, ''} for a new courier without a location, or {2, its partner} for a
-- courier another partner registered (nothing is written).
local previous = redis.call('HGET', KEYS[1], 'region') or ''
if previous ~= '' and ARGV[11] ~= '' then
  local owner = redis.call('HGET', KEYS[1], 'partner') or ''
  if owner ~= ARGV[11] then
    return {2, owner}
  end
end
if previous == '' and ARGV[8] == '' then
  return {0, ''}
end
redis.call('HSET', KEYS[1],
  'name', ARGV[1],
  'home_county', ARGV[2],
  'home_province', ARGV[3],
  'region', ARGV[4],
  'vehicle', ARGV[5],
  'cold_chain', ARGV[6],
  'capacity', ARGV[7],
  'updated_at_ms', ARGV[10])
if previous == '' then
  redis.call('HSET', KEYS[1], 'load', 0, 'available', 1, 'registered_at_ms', ARGV[10],
    'partner', ARGV[11])
end
if ARGV[8] ~= '' then
  redis.call('HSET', KEYS[1], 'latitude', ARGV[8], 'longitude', ARGV[9])
end
return {1, previous}
