-- Claim up to N ready jobs for one worker in one round trip, walking lanes in priority order.
--
-- A claimed job gets a lease: the in-progress key (arq's name) holds the claimer's token and expires with the
-- lease, and the job's score in its lane moves to the lease's end. The job therefore stays in arq's queue ZSET
-- (so arq's Job.status/result keep working) but is invisible to other claimers until the lease runs out.
-- The claimed hash of its queue remembers the job's original due time and lane until it is settled.
--
-- Recovery (the holder died, or lost Redis for longer than its lease): a job whose lease ran out is put back at
-- its ORIGINAL due time, so it is claimed ahead of newer work instead of behind the whole backlog, and the
-- claim counts a recovery (asyncq:recoveries), separately from the task's own tries. After a worker reports
-- an outage (ARGV[13]), nobody recovers lapsed leases until the reconnect window ends: their owners may be
-- reconnecting and will renew or settle them (see _owner.lua).
--
-- Bad data never aborts the script: a lane key of the wrong type is skipped and reported; a job whose payload
-- key has the wrong type, or whose retry counter is not an integer, is claimed with a problem string (its try
-- untouched) so the worker dead-letters it; a lease key without a TTL (it would block its job forever) gets
-- one.
--
-- KEYS: lane keys, highest priority first (all lanes of the first queue, then the next queue, ...)
-- ARGV[1] now (ms)  ARGV[2] max jobs to claim  ARGV[3] lease (ms)  ARGV[4] token prefix (worker id)
-- ARGV[5] in-progress prefix  ARGV[6] job prefix  ARGV[7] retry prefix  ARGV[8] running prefix
-- ARGV[9] paused-queues set  ARGV[10] claimed prefix  ARGV[11] recoveries hash  ARGV[12] reconnect key
-- ARGV[13] reconnect window end (ms; 0 unless this worker just came back after an outage)
-- ARGV[14 .. 13 + #KEYS] the queue name of each lane
-- Returns {next_due_ms or -1, {broken key, error, ...}, then per claimed job 6 values: lane index (1-based),
--          id, payload (false if expired), generation (the retry counter), recoveries, problem ('' if none)}
local now, want, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local token_prefix, ip_prefix, job_prefix, retry_prefix, running_prefix = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local paused_set, claimed_prefix, recoveries_key, reconnect_key = ARGV[9], ARGV[10], ARGV[11], ARGV[12]
local reconnect_until = tonumber(ARGV[13])
local Q = 13
local until_ms = now + lease
local broken = {}
local broken_list = {}
local out = {-1, broken_list}
local got = 0

local function failed(reply)
  return type(reply) == 'table' and reply.err ~= nil
end

local function note_broken(key, reply)
  if not broken[key] then
    broken[key] = true
    broken_list[#broken_list + 1] = key
    broken_list[#broken_list + 1] = reply.err
  end
end

-- Admission: per-tenant fairness and global rate limits plug in here, decided in this same script.
-- Returning false skips the job for this claim without touching its tries.
local function admit(lane, id)
  return true
end

-- The reconnect window: the latest end any worker reported.
local hold = tonumber(redis.call('GET', reconnect_key) or '0') or 0
if reconnect_until > hold then
  hold = reconnect_until
  redis.call('SET', reconnect_key, string.format('%d', hold), 'PX', string.format('%d', hold - now + 60000))
end
local recovering = now >= hold

-- Paused queues are skipped (their jobs stay queued); looked up once per queue, not per lane.
local paused = {}
for i = 1, #KEYS do
  local queue = ARGV[Q + i]
  if paused[queue] == nil then
    local p = redis.pcall('SISMEMBER', paused_set, queue)
    paused[queue] = p == 1
    if failed(p) then note_broken(paused_set, p) end
  end
end

-- Lapsed leases go back to their original due time (ahead of newer work), once per queue.
local function restore_lapsed(queue)
  local running, claimed = running_prefix .. queue, claimed_prefix .. queue
  local lapsed = redis.pcall('ZRANGEBYSCORE', running, '-inf', now, 'LIMIT', 0, 500)
  if failed(lapsed) then
    note_broken(running, lapsed)
    return
  end
  for _, id in ipairs(lapsed) do
    local pttl = redis.call('PTTL', ip_prefix .. id)
    if pttl >= 0 then
      -- Still held (renewed late, or an arq worker): look later. 0 counts as held: a key that expires while this
      -- script runs still exists for the script (Redis freezes its clock for key expiry), so SET NX below would
      -- fail and the job, taken out of the running set, would lose its place for good.
      redis.call('ZADD', running, now + pttl, id)
    else
      redis.call('ZREM', running, id)
      local v = redis.pcall('HGET', claimed, id)
      if failed(v) then
        note_broken(claimed, v)
        v = false
      end
      local sep = v and string.find(v, '|', 1, true)
      if sep then  -- pcall: the lane may since have been broken by a foreign write; skipped below then
        redis.pcall('ZADD', string.sub(v, sep + 1), 'XX', string.sub(v, 1, sep - 1), id)
      end
    end
  end
end

local restored = {}
if recovering then
  for i = 1, #KEYS do
    local queue = ARGV[Q + i]
    if not paused[queue] and not restored[queue] then
      restored[queue] = true
      restore_lapsed(queue)
    end
  end
end

local function claim_one(i, lane, queue, id, score)
  local claimed = claimed_prefix .. queue
  if not recovering and not broken[claimed] then
    local prev = redis.pcall('HEXISTS', claimed, id)
    if prev == 1 then
      redis.call('ZADD', lane, 'XX', hold, id)  -- its owner may be reconnecting: wait for the window to end
      return
    elseif failed(prev) then
      note_broken(claimed, prev)
    end
  end
  local ip_key = ip_prefix .. id
  local token = token_prefix .. ':' .. ARGV[1] .. ':' .. id  -- ARGV[1]: the exact digits Python sent
  if not redis.call('SET', ip_key, token, 'NX', 'PX', lease) then
    -- Held by someone else (an arq worker, or a peer whose clock runs behind): look again when it ends.
    local pttl = redis.call('PTTL', ip_key)
    if pttl == -1 then  -- a lease that never ends would keep its job from ever running: give it an end
      redis.call('PEXPIRE', ip_key, lease)
      pttl = lease
    elseif pttl < 0 then
      pttl = 0
    end
    redis.call('ZADD', lane, 'XX', now + pttl, id)
    return
  end
  local problem, gen, recoveries = '', 0, 0
  local payload = redis.pcall('GET', job_prefix .. id)
  if failed(payload) then
    problem = 'its payload key is a ' .. redis.call('TYPE', job_prefix .. id)['ok'] .. ', not a string'
    payload = false
  else
    local counter = redis.pcall('INCR', retry_prefix .. id)
    if failed(counter) then
      problem = 'its retry counter is not an integer (' .. counter.err .. ')'
    else
      gen = counter
      redis.call('PEXPIRE', retry_prefix .. id, 88400000)
    end
  end
  if problem == '' and not broken[claimed] then
    -- The claimed hash keeps the due time (restore_lapsed has put a lapsed job back at its original one) and
    -- lane. HSET answers 0 when the field was there: the job was claimed before and never settled, so this claim
    -- is a recovery.
    local fresh = redis.pcall('HSET', claimed, id, score .. '|' .. lane)
    if failed(fresh) then
      note_broken(claimed, fresh)
    elseif not broken[recoveries_key] then
      local r
      if fresh == 0 then
        r = redis.pcall('HINCRBY', recoveries_key, id, 1)
      elseif gen > 1 then  -- only a job claimed before can have been recovered before
        r = redis.pcall('HGET', recoveries_key, id)
      end
      if failed(r) then
        note_broken(recoveries_key, r)
      elseif r then
        recoveries = tonumber(r) or 0
      end
    end
  end
  redis.call('ZADD', lane, 'XX', until_ms, id)
  if not broken[running_prefix .. queue] then
    local added = redis.pcall('ZADD', running_prefix .. queue, until_ms, id)
    if failed(added) then note_broken(running_prefix .. queue, added) end
  end
  out[#out + 1] = i
  out[#out + 1] = id
  out[#out + 1] = payload
  out[#out + 1] = gen
  out[#out + 1] = recoveries
  out[#out + 1] = problem
  got = got + 1
end

for i, lane in ipairs(KEYS) do
  if got >= want then break end
  local queue = ARGV[Q + i]
  if not paused[queue] then
    local ready = redis.pcall('ZRANGEBYSCORE', lane, '-inf', now, 'WITHSCORES', 'LIMIT', 0, want - got)
    if failed(ready) then
      note_broken(lane, ready)
    else
      for k = 1, #ready, 2 do
        if admit(lane, ready[k]) then
          claim_one(i, lane, queue, ready[k], ready[k + 1])
        end
      end
    end
  end
end

if got < want then
  -- The lanes are drained: tell the worker when the earliest scheduled job (or expiring lease) is due,
  -- clamped to [now, now + 1 h] (scores may be -inf or +inf).
  local next_due = -1
  for i, lane in ipairs(KEYS) do
    if not paused[ARGV[Q + i]] and not broken[lane] then
      local first = redis.call('ZRANGE', lane, 0, 0, 'WITHSCORES')
      if first[2] then
        local s = math.max(now, math.min(tonumber(first[2]) or now, now + 3600000))
        if next_due < 0 or s < next_due then next_due = s end
      end
    end
  end
  out[1] = next_due
end
return out
