-- Record the outcome of a batch of finished jobs and release them, one round trip for the batch.
-- Only the lease holder may finish a job: a worker that lost its lease must not delete a re-run's state.
-- ARGV[1] now  ARGV[2] in-progress prefix  ARGV[3] job prefix  ARGV[4] retry prefix  ARGV[5] result prefix
-- ARGV[6] running prefix  ARGV[7] abort set  ARGV[8] done channel prefix  ARGV[9] recent-jobs list
-- ARGV[10] recent-jobs cap  ARGV[11] number of jobs
-- then per job 6 values: id, token, lane, queue, result bytes ('' for none), keep result (ms, 0 = don't keep)
-- Returns one status per job: 1 finished, 0 lease lost (nothing written)
-- The finished ids go to the capped recent-jobs list (for the dashboard) in one LPUSH + LTRIM per batch.
local ip_prefix, job_prefix, retry_prefix, result_prefix = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local running_prefix, abort_set, done_prefix = ARGV[6], ARGV[7], ARGV[8]
local recent, recent_cap = ARGV[9], tonumber(ARGV[10])
local n = tonumber(ARGV[11])
local out = {}
local finished = {}
for i = 0, n - 1 do
  local b = 12 + i * 6
  local id, token, lane, queue = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local result, keep = ARGV[b + 4], tonumber(ARGV[b + 5])
  if redis.call('GET', ip_prefix .. id) == token then
    redis.call('DEL', ip_prefix .. id, job_prefix .. id, retry_prefix .. id)
    redis.call('ZREM', lane, id)
    redis.call('ZREM', running_prefix .. queue, id)
    redis.call('ZREM', abort_set, id)
    if result ~= '' and keep > 0 then
      redis.call('SET', result_prefix .. id, result, 'PX', keep)
    end
    redis.call('PUBLISH', done_prefix .. id, '1')
    finished[#finished + 1] = id
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
if #finished > 0 and recent_cap > 0 then
  for start = 1, #finished, 1000 do  -- unpack() has a stack limit
    redis.call('LPUSH', recent, unpack(finished, start, math.min(start + 999, #finished)))
  end
  redis.call('LTRIM', recent, 0, recent_cap - 1)
end
return out
