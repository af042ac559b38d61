-- Move a dead letter back to its lane as a fresh job (tries reset, old failure result dropped).
-- ARGV[1] now  ARGV[2] job prefix  ARGV[3] retry prefix  ARGV[4] result prefix  ARGV[5] dlq index
-- ARGV[6] dlq payloads  ARGV[7] dlq meta  ARGV[8] wake prefix  ARGV[9] id  ARGV[10] lane  ARGV[11] queue
-- ARGV[12] payload ttl (ms)  ARGV[13] recoveries hash  ARGV[14] ring ('' unless the lane is a flow's
-- sub-lane)  ARGV[15] flow suffix: the flow rejoins its lane's ring (claim.lua), or its job would wait unseen
-- Returns 1 moved, 0 no such dead letter, -1 a live job with that id exists (retry it later)
local now = tonumber(ARGV[1])
local job_prefix, retry_prefix, result_prefix = ARGV[2], ARGV[3], ARGV[4]
local dlq, dlq_payloads, dlq_meta, wake_prefix = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local id, lane, queue, ttl = ARGV[9], ARGV[10], ARGV[11], tonumber(ARGV[12])
local payload = redis.call('HGET', dlq_payloads, id)
if not payload then
  return 0
end
if redis.call('EXISTS', job_prefix .. id) == 1 then
  return -1
end
redis.call('SET', job_prefix .. id, payload, 'PX', ttl)
redis.call('DEL', retry_prefix .. id, result_prefix .. id)
redis.pcall('HDEL', ARGV[13], id)
redis.call('ZADD', lane, now, id)
if ARGV[14] ~= '' then
  local first = redis.call('ZRANGE', ARGV[14], 0, 0, 'WITHSCORES')
  redis.call('ZADD', ARGV[14], 'NX', first[2] or 0, ARGV[15])
end
redis.call('HDEL', dlq_payloads, id)
redis.call('HDEL', dlq_meta, id)
redis.call('ZREM', dlq, id)
redis.call(PUBLISH, wake_prefix .. queue, now)
return 1
