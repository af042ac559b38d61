-- Purge a lane's READY jobs (`asyncq purge QUEUE`): due now and held by no worker. Jobs due later (delayed,
-- retries after backoff) and running jobs stay; a job whose lease lapsed (its in-progress key is gone) counts
-- as ready, as the claim script would hand it out next. Called per lane, in batches, until it scans fewer ids
-- than the batch.
-- ARGV[1] now  ARGV[2] lane  ARGV[3] in-progress prefix  ARGV[4] job prefix  ARGV[5] retry prefix
-- ARGV[6] recoveries hash  ARGV[7] claimed hash of the lane's queue  ARGV[8] running zset of the lane's queue
-- ARGV[9] unknown-since hash  ARGV[10] offset (held ids skipped so far)  ARGV[11] batch size
-- Returns {removed, held (skipped), scanned}; a lane that is not a sorted set scans nothing ({0, 0, 0})
local now, lane = tonumber(ARGV[1]), ARGV[2]
local ip_prefix, job_prefix, retry_prefix = ARGV[3], ARGV[4], ARGV[5]
if redis.call('TYPE', lane)['ok'] ~= 'zset' then
  return {0, 0, 0}
end
local ids = redis.call('ZRANGEBYSCORE', lane, '-inf', now, 'LIMIT', tonumber(ARGV[10]), tonumber(ARGV[11]))
local removed, held = 0, 0
for _, id in ipairs(ids) do
  if redis.call('EXISTS', ip_prefix .. id) == 1 then
    held = held + 1
  else
    redis.call('ZREM', lane, id)
    redis.call('DEL', job_prefix .. id, retry_prefix .. id)
    redis.pcall('HDEL', ARGV[6], id)
    redis.pcall('HDEL', ARGV[7], id)
    redis.pcall('ZREM', ARGV[8], id)
    redis.pcall('HDEL', ARGV[9], id)
    removed = removed + 1
  end
end
return {removed, held, #ids}
