-- Adds a stock lot to a product. Every key belongs to the product's hash slot.
--
-- KEYS[1] product hash   KEYS[2] lots hash   KEYS[3] lots by best-before (zset)
-- ARGV[1] lot id   ARGV[2] quantity   ARGV[3] best-before day   ARGV[4] harvest day
--
-- Returns {'unknown'} for no such product, {'exists', received, best_before,
-- harvested} when the lot is already there (nothing changes), or {'created'}.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'unknown'}
end
local lot = ARGV[1]
local received = redis.call('HGET', KEYS[2], lot .. '|received')
if received then
  return {
    'exists',
    received,
    redis.call('HGET', KEYS[2], lot .. '|best_before'),
    redis.call('HGET', KEYS[2], lot .. '|harvested'),
  }
end
redis.call('HSET', KEYS[2],
  lot .. '|received', ARGV[2],
  lot .. '|on_hand', ARGV[2],
  lot .. '|reserved', 0,
  lot .. '|best_before', ARGV[3],
  lot .. '|harvested', ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[3], lot)
return {'created'}
