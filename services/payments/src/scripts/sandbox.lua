-- The sandbox provider's memory of one idempotency key: one hash, one slot.
--
-- KEYS[1] sandbox hash of the key
-- ARGV[1] operation   ARGV[2] amount in fen
-- ARGV[3] temporary failures before deciding   ARGV[4] 'approved' | 'declined'
-- ARGV[5] reference   ARGV[6] decline reason
-- ARGV[7] keep the key this long after its last call (ms)
--
-- Every call counts in 'calls'. A decided key returns its first decision, or
-- {'conflict', operation, amount} when asked for something else. Otherwise
-- the first ARGV[3] attempts return {'transient', attempt}; then the decision
-- is kept and returned as {decision, reference, reason}.
redis.call('HINCRBY', KEYS[1], 'calls', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[7])
local decided = redis.call('HGET', KEYS[1], 'decision')
if decided then
  local operation = redis.call('HGET', KEYS[1], 'operation')
  local amount = redis.call('HGET', KEYS[1], 'amount')
  if operation ~= ARGV[1] or amount ~= ARGV[2] then
    return {'conflict', operation, amount}
  end
  return {
    decided,
    redis.call('HGET', KEYS[1], 'reference'),
    redis.call('HGET', KEYS[1], 'reason'),
  }
end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
if attempt <= tonumber(ARGV[3]) then
  return {'transient', tostring(attempt)}
end
redis.call('HSET', KEYS[1],
  'decision', ARGV[4],
  'operation', ARGV[1],
  'amount', ARGV[2],
  'reference', ARGV[5],
  'reason', ARGV[6])
return {ARGV[4], ARGV[5], ARGV[6]}
