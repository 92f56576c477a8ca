-- Creates a shipment unless it exists: one shipment per order and pickup
-- point, ever.
--
-- KEYS[1] shipment hash
-- ARGV[1] contents (Shipment protobuf)   ARGV[2] order id   ARGV[3] order region
-- ARGV[4] courier pool region   ARGV[5] now (unix ms)   ARGV[6] assign-by (unix ms)
-- ARGV[7] the digest of the buyer's delivery code ('' for none)
--
-- Returns 'created' or 'existing' (nothing changes).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 'existing'
end
redis.call('HSET', KEYS[1],
  'contents', ARGV[1],
  'order_id', ARGV[2],
  'region', ARGV[3],
  'pool', ARGV[4],
  'state', 'awaiting',
  'created_at_ms', ARGV[5],
  'updated_at_ms', ARGV[5],
  'assign_by_ms', ARGV[6],
  'code_digest', ARGV[7])
return 'created'
