-- Sets a product's price. KEYS[1] product hash. ARGV[1] price in fen,
-- ARGV[2] update time (unix milliseconds). Returns 0 for no such product.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'price_fen', ARGV[1], 'updated_at_ms', ARGV[2])
return 1
