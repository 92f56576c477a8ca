-- Sets one field of a product kept beside its protobuf: `price_fen` or
-- `per_buyer_limit`. KEYS[1] product hash. ARGV[1] the field, ARGV[2] its
-- value, ARGV[3] update time (unix milliseconds). Returns 0 for no such
-- product.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], 'updated_at_ms', ARGV[3])
return 1
