-- Sets a product's price. KEYS[1] product hash. ARGV[1] price in fen,
-- ARGV[2] update time (unix milliseconds). Returns the price it replaced, or
-- -1 for no such product.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
local previous = tonumber(redis.call('HGET', KEYS[1], 'price_fen') or '0')
redis.call('HSET', KEYS[1], 'price_fen', ARGV[1], 'updated_at_ms', ARGV[2])
return previous
