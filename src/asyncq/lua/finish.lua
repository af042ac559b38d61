-- Record the outcome of a batch of finished jobs and release them, one round trip for the batch.
-- Only the owner may finish a job (asyncq_owns, _owner.lua): its lease token, or, if the lease lapsed while
-- Redis was out of reach, its claim generation while nobody claimed the job since. A worker that lost the job
-- to another claim must not write over the re-run's state.
-- ARGV[1] now  ARGV[2] in-progress prefix  ARGV[3] job prefix  ARGV[4] retry prefix  ARGV[5] result prefix
-- ARGV[6] running prefix  ARGV[7] abort set  ARGV[8] done channel prefix  ARGV[9] recent-jobs list
-- ARGV[10] recent-jobs cap  ARGV[11] claimed prefix  ARGV[12] recoveries hash  ARGV[13] number of jobs
-- then per job 7 values: id, token, lane, queue, generation, result bytes ('' for none), keep result (ms)
-- Returns one status per job: 1 finished, 0 lost to another claim (nothing written)
-- The finished ids go to the capped recent-jobs list (for the dashboard) in one LPUSH + LTRIM per batch.
local ip_prefix, job_prefix, retry_prefix, result_prefix = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local running_prefix, abort_set, done_prefix = ARGV[6], ARGV[7], ARGV[8]
local recent, recent_cap = ARGV[9], tonumber(ARGV[10])
local claimed_prefix, recoveries_key = ARGV[11], ARGV[12]
local n = tonumber(ARGV[13])
local out = {}
local finished = {}
for i = 0, n - 1 do
  local b = 14 + i * 7
  local id, token, lane, queue, gen = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], tonumber(ARGV[b + 4])
  local result, keep = ARGV[b + 5], tonumber(ARGV[b + 6])
  if asyncq_owns(ip_prefix .. id, token, retry_prefix .. id, gen, claimed_prefix .. queue, id) then
    redis.call('DEL', ip_prefix .. id, job_prefix .. id, retry_prefix .. id)
    redis.pcall('ZREM', lane, id)
    redis.pcall('ZREM', running_prefix .. queue, id)
    redis.pcall('HDEL', claimed_prefix .. queue, id)
    if gen > 1 then  -- only a job claimed more than once can have been recovered
      redis.pcall('HDEL', recoveries_key, id)
    end
    redis.pcall('ZREM', abort_set, id)
    if result ~= '' and keep > 0 then
      redis.call('SET', result_prefix .. id, result, 'PX', keep)
    end
    redis.call(PUBLISH, done_prefix .. id, '1')
    finished[#finished + 1] = id
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
if #finished > 0 and recent_cap > 0 then
  for start = 1, #finished, 1000 do  -- unpack() has a stack limit
    redis.pcall('LPUSH', recent, unpack(finished, start, math.min(start + 999, #finished)))
  end
  redis.pcall('LTRIM', recent, 0, recent_cap - 1)
end
return out
