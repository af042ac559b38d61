-- Renew the leases of every job one worker runs, in one round trip, and report lost leases and aborts.
-- A lease that lapsed while nobody claimed the job since (asyncq_owns: a Redis outage, a stalled loop) is
-- taken back, so its job keeps running here instead of running twice.
-- ARGV[1] now  ARGV[2] lease (ms)  ARGV[3] in-progress prefix  ARGV[4] running prefix  ARGV[5] abort set
-- ARGV[6] retry prefix  ARGV[7] claimed prefix  ARGV[8] number of jobs,
-- then per job 5 values: id, token, lane key, queue, generation
-- Returns one status per job: 1 renewed, 0 lease lost (someone else may run it), 2 renewed + abort requested
local now, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
local ip_prefix, running_prefix, abort_set = ARGV[3], ARGV[4], ARGV[5]
local retry_prefix, claimed_prefix = ARGV[6], ARGV[7]
local n = tonumber(ARGV[8])
local until_ms = now + lease
local out = {}
for i = 0, n - 1 do
  local b = 9 + i * 5
  local id, token, lane, queue, gen = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], tonumber(ARGV[b + 4])
  if asyncq_owns(ip_prefix .. id, token, retry_prefix .. id, gen, claimed_prefix .. queue, id) then
    redis.call('SET', ip_prefix .. id, token, 'PX', lease)
    redis.pcall('ZADD', lane, 'XX', until_ms, id)
    redis.pcall('ZADD', running_prefix .. queue, until_ms, id)
    if redis.pcall('ZSCORE', abort_set, id) == false then
      out[#out + 1] = 1
    else
      out[#out + 1] = 2
    end
  else
    out[#out + 1] = 0
  end
end
-- arq's abort set never expires its entries (arq bug #485); drop requests older than a minute.
redis.pcall('ZREMRANGEBYSCORE', abort_set, '-inf', now - 60000)
return out
