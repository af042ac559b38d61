-- Claim up to N ready jobs for one worker in one round trip, walking lanes in priority order.
--
-- A claimed job gets a lease: the in-progress key (arq's name) holds the claimer's token and expires with the
-- lease, and the job's score in its lane moves to the lease's end. The job therefore stays in arq's queue ZSET
-- (so arq's Job.status/result keep working) but is invisible to other claimers until the lease runs out.
-- If the worker dies, nobody renews the lease and the job becomes claimable again by itself: no reaper.
-- Running ids never sit at the head of a lane, so a worker never skips over them (arq's starvation bug).
--
-- KEYS: lane keys, highest priority first (all lanes of the first queue, then the next queue, ...)
-- ARGV[1] now (ms)  ARGV[2] max jobs to claim  ARGV[3] lease (ms)  ARGV[4] token prefix (worker id)
-- ARGV[5] in-progress prefix  ARGV[6] job prefix  ARGV[7] retry prefix  ARGV[8] running prefix
-- ARGV[9] paused-queues set  ARGV[10 .. 9 + #KEYS] the queue name of each lane
-- Returns {next_due_ms or -1, then per claimed job: lane index (1-based), id, payload (nil if expired), try}
local now, want, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local token_prefix, ip_prefix, job_prefix, retry_prefix, running_prefix = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local paused_set = ARGV[9]
local until_ms = now + lease
local out = {-1}
local got = 0

-- Admission: per-tenant fairness and global rate limits plug in here, decided in this same script.
-- Returning false skips the job for this claim without touching its tries.
local function admit(lane, id)
  return true
end

-- Paused queues are skipped (their jobs stay queued); looked up once per queue, not per lane.
local paused = {}
for i = 1, #KEYS do
  local queue = ARGV[9 + i]
  if paused[queue] == nil then
    paused[queue] = redis.call('SISMEMBER', paused_set, queue) == 1
  end
end

for i, lane in ipairs(KEYS) do
  if got >= want then break end
  local queue = ARGV[9 + i]
  local ids = {}
  if not paused[queue] then
    ids = redis.call('ZRANGEBYSCORE', lane, '-inf', now, 'LIMIT', 0, want - got)
  end
  for _, id in ipairs(ids) do
    if admit(lane, id) then
      local token = token_prefix .. ':' .. ARGV[1] .. ':' .. id  -- ARGV[1]: the exact digits Python sent
      if redis.call('SET', ip_prefix .. id, token, 'NX', 'PX', lease) then
        redis.call('ZADD', lane, 'XX', until_ms, id)
        redis.call('ZADD', running_prefix .. queue, until_ms, id)
        local try = redis.call('INCR', retry_prefix .. id)
        redis.call('PEXPIRE', retry_prefix .. id, 88400000)
        out[#out + 1] = i
        out[#out + 1] = id
        out[#out + 1] = redis.call('GET', job_prefix .. id)
        out[#out + 1] = try
        got = got + 1
      else
        -- Held by someone else (an arq worker, or a peer whose clock runs behind): look again when it ends.
        local pttl = redis.call('PTTL', ip_prefix .. id)
        if pttl < 0 then pttl = lease end
        redis.call('ZADD', lane, 'XX', now + pttl, id)
      end
    end
  end
end

if got < want then
  -- The lanes are drained: tell the worker when the earliest scheduled job (or expiring lease) is due.
  local next_due = -1
  for i, lane in ipairs(KEYS) do
    local first = {}
    if not paused[ARGV[9 + i]] then
      first = redis.call('ZRANGE', lane, 0, 0, 'WITHSCORES')
    end
    if first[2] then
      local s = tonumber(first[2])
      if next_due < 0 or s < next_due then next_due = s end
    end
  end
  out[1] = next_due
end
return out
