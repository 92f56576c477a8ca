-- Appends an audit record unless the log holds its id already, and forgets
-- what is older than the retention. Both keys share the service's hash tag.
--
-- KEYS[1] the log (stream)   KEYS[2] the record ids it holds (zset, by time)
-- ARGV[1] record id   ARGV[2] now (unix ms)   ARGV[3] oldest time kept (unix ms)
-- ARGV[4] subject     ARGV[5] the record (AuditRecord protobuf)
--
-- Returns 1 when the record was appended, 0 when it was there already.
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[3])
if redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  return 0
end
redis.call('XADD', KEYS[1], 'MINID', ARGV[3], '*',
  'id', ARGV[1], 'subject', ARGV[4], 'data', ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
