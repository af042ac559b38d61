-- Renew the leases of every job one worker runs, in one round trip, and report lost leases and aborts.
-- ARGV[1] now  ARGV[2] lease (ms)  ARGV[3] in-progress prefix  ARGV[4] running prefix  ARGV[5] abort set
-- ARGV[6] number of jobs, then per job 4 values: id, token, lane key, queue
-- Returns one status per job: 1 renewed, 0 lease lost (someone else may run it), 2 renewed + abort requested
local now, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
local ip_prefix, running_prefix, abort_set = ARGV[3], ARGV[4], ARGV[5]
local n = tonumber(ARGV[6])
local until_ms = now + lease
local out = {}
for i = 0, n - 1 do
  local b = 7 + i * 4
  local id, token, lane, queue = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  if redis.call('GET', ip_prefix .. id) == token then
    redis.call('PEXPIRE', ip_prefix .. id, lease)
    redis.call('ZADD', lane, 'XX', until_ms, id)
    redis.call('ZADD', running_prefix .. queue, until_ms, id)
    if redis.call('ZSCORE', abort_set, id) then
      out[#out + 1] = 2
    else
      out[#out + 1] = 1
    end
  else
    out[#out + 1] = 0
  end
end
-- arq's abort set never expires its entries (arq bug #485); drop requests older than a minute.
redis.call('ZREMRANGEBYSCORE', abort_set, '-inf', now - 60000)
return out
