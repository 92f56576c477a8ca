-- Claims deadlines that are due, so that one replica handles each: a claimed
-- deadline moves a lease into the future; whoever handles it removes it, and
-- if that replica dies, the deadline comes due again when the lease ends.
-- KEYS[1] deadlines (zset: member -> due ms). ARGV[1] now (ms), ARGV[2] lease
-- (ms), ARGV[3] how many at most. Returns the claimed members.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), member)
end
return due
