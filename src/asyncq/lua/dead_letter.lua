-- Move a job to the dead-letter store, keeping its payload as enqueued so a person can inspect and retry it.
-- Only the owner may do it (asyncq_owns, _owner.lua). The dead letter's id may differ from the job's: an id
-- that is not valid UTF-8 is filed under its escaped form, so that people and tools can name it.
-- A payload key of the wrong type is kept as its DUMP serialization (RESTORE brings it back).
-- ARGV[1] now  ARGV[2] in-progress prefix  ARGV[3] job prefix  ARGV[4] retry prefix  ARGV[5] result prefix
-- ARGV[6] running prefix  ARGV[7] abort set  ARGV[8] done prefix  ARGV[9] dlq index  ARGV[10] dlq payloads
-- ARGV[11] dlq meta  ARGV[12] unknown-since hash  ARGV[13] id  ARGV[14] token  ARGV[15] lane  ARGV[16] queue
-- ARGV[17] meta (JSON)  ARGV[18] failure result bytes  ARGV[19] keep result (ms)  ARGV[20] max dlq size
-- ARGV[21] recent-jobs list  ARGV[22] recent-jobs cap  ARGV[23] claimed prefix  ARGV[24] recoveries hash
-- ARGV[25] generation  ARGV[26] dead-letter id
-- Returns 1 dead-lettered, 0 lost to another claim
local now = tonumber(ARGV[1])
local ip_prefix, job_prefix, retry_prefix, result_prefix = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local running_prefix, abort_set, done_prefix = ARGV[6], ARGV[7], ARGV[8]
local dlq, dlq_payloads, dlq_meta, unknown_since = ARGV[9], ARGV[10], ARGV[11], ARGV[12]
local id, token, lane, queue = ARGV[13], ARGV[14], ARGV[15], ARGV[16]
local meta, result, keep, max_size = ARGV[17], ARGV[18], tonumber(ARGV[19]), tonumber(ARGV[20])
local claimed_prefix, recoveries_key, gen, dlq_id = ARGV[23], ARGV[24], tonumber(ARGV[25]), ARGV[26]
if not asyncq_owns(ip_prefix .. id, token, retry_prefix .. id, gen, claimed_prefix .. queue, id) then
  return 0
end
local payload = redis.pcall('GET', job_prefix .. id)
if type(payload) == 'table' then
  payload = redis.call('DUMP', job_prefix .. id)
end
redis.call('HSET', dlq_payloads, dlq_id, payload or '')
redis.call('HSET', dlq_meta, dlq_id, meta)
redis.call('ZADD', dlq, now, dlq_id)
redis.call('DEL', ip_prefix .. id, job_prefix .. id, retry_prefix .. id)
redis.pcall('ZREM', lane, id)
redis.pcall('ZREM', running_prefix .. queue, id)
redis.pcall('HDEL', claimed_prefix .. queue, id)
redis.pcall('HDEL', recoveries_key, id)
redis.pcall('ZREM', abort_set, id)
redis.pcall('HDEL', unknown_since, id)
if result ~= '' and keep > 0 then
  redis.call('SET', result_prefix .. dlq_id, result, 'PX', keep)
end
redis.call(PUBLISH, done_prefix .. dlq_id, '1')
local recent, recent_cap = ARGV[21], tonumber(ARGV[22])
if recent_cap > 0 then
  redis.pcall('LPUSH', recent, dlq_id)
  redis.pcall('LTRIM', recent, 0, recent_cap - 1)
end
local excess = redis.call('ZCARD', dlq) - max_size
if excess > 0 then
  local old = redis.call('ZRANGE', dlq, 0, excess - 1)
  for _, old_id in ipairs(old) do
    redis.call('HDEL', dlq_payloads, old_id)
    redis.call('HDEL', dlq_meta, old_id)
  end
  redis.call('ZREMRANGEBYRANK', dlq, 0, excess - 1)
end
return 1
