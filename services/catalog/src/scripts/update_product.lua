-- Sets one field of a product kept beside its protobuf: `price_fen` or
-- `per_buyer_limit`. KEYS[1] product hash. ARGV[1] the field, ARGV[2] its
-- value, ARGV[3] update time (unix milliseconds). Returns the value it
-- replaced (0 when unset), or -1 for no such product.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
local previous = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], 'updated_at_ms', ARGV[3])
return previous
