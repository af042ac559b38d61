-- Abort a job: a queued or scheduled job is removed at once and gets an "aborted" result; a running job is
-- flagged in arq's abort set and announced, and its worker cancels it.
-- ARGV[1] now  ARGV[2] in-progress prefix  ARGV[3] job prefix  ARGV[4] retry prefix  ARGV[5] result prefix
-- ARGV[6] abort set  ARGV[7] abort channel  ARGV[8] done prefix  ARGV[9] id  ARGV[10] lane
-- ARGV[11] aborted result bytes  ARGV[12] keep result (ms)  ARGV[13] recoveries hash
-- ARGV[14] the claimed hash of the lane's queue
-- Returns 1 removed before it ran, 2 running (cancel requested), 0 not found or already finished
local now = tonumber(ARGV[1])
local ip_prefix, job_prefix, retry_prefix, result_prefix = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local abort_set, abort_channel, done_prefix = ARGV[6], ARGV[7], ARGV[8]
local id, lane, result, keep = ARGV[9], ARGV[10], ARGV[11], tonumber(ARGV[12])
if redis.call('EXISTS', ip_prefix .. id) == 1 then
  redis.call('ZADD', abort_set, now, id)
  redis.call(PUBLISH, abort_channel, id)
  return 2
end
if redis.call('ZREM', lane, id) == 1 then
  redis.call('DEL', job_prefix .. id, retry_prefix .. id)
  redis.pcall('HDEL', ARGV[13], id)
  redis.pcall('HDEL', ARGV[14], id)
  if keep > 0 then
    redis.call('SET', result_prefix .. id, result, 'PX', keep)
  end
  redis.call(PUBLISH, done_prefix .. id, '1')
  return 1
end
return 0
