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
-- ARGV[14] fair-ring prefix  ARGV[15] tenant-weight prefix  ARGV[16] rate prefix  ARGV[17] in-flight prefix
-- ARGV[18] this worker's task limits, msgpack {task: {T, tau, tenant T, tenant tau, cap, tenant cap}} (ms; 0 none)
-- ARGV[19 .. 18 + #KEYS] the queue name of each lane
-- Returns {next_due_ms or -1, {broken key, error, ...}, then per claimed job 7 values: lane index (1-based),
--          id, payload (false if expired), generation (the retry counter), recoveries, problem ('' if none),
--          flow suffix ('' for the lane itself, else the sub-lane's suffix, see below)}
--
-- Flow control. A lane that has a ring (asyncq:fair:<lane>, ZSET flow suffix -> pass) is claimed from in
-- weighted round-robin over its flows: the flow with the lowest pass gives its oldest ready job, then its pass
-- grows by 1/weight of its tenant. A flow is a sub-lane (the lane's key plus '#t:<tenant>' and/or '#f:<task>');
-- the lane itself is the default tenant's flow ''. A flow of a limited task ('#f:<task>') is admitted only while
-- the task's rate (GCRA on Redis's clock: a theoretical arrival time per task and per task and tenant) and
-- in-flight caps (a set of job ids per task and per task and tenant, an id counting while its lease key lives)
-- allow; a refused flow keeps its jobs queued, no try used, and the reply's next due time is when it may start.
local now, want, lease = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local token_prefix, ip_prefix, job_prefix, retry_prefix, running_prefix = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local paused_set, claimed_prefix, recoveries_key, reconnect_key = ARGV[9], ARGV[10], ARGV[11], ARGV[12]
local reconnect_until = tonumber(ARGV[13])
local fair_prefix, weight_prefix, rate_prefix, inflight_prefix = ARGV[14], ARGV[15], ARGV[16], ARGV[17]
local limits = cmsgpack.unpack(ARGV[18])
local Q = 18
local SCAN = 64            -- flows read at a time per lane (the lowest passes first)
local PAGES = 8            -- at most SCAN * PAGES flows looked at per lane and claim
local CAP_RECHECK = 100    -- ms: a flow refused by a full cap is looked at again this soon (a slot frees unseen)
local soonest = -1         -- earliest time a refused or not-yet-due flow may give a job (ms)
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

local function note_due(ms)
  if soonest < 0 or ms < soonest then soonest = ms end
end

-- Admission of a flow's next job: the rate and in-flight limits of its task (none for an unlimited flow).
-- Returns true, or false after noting when to look again. Foreign data in a limit key is reported and the
-- limit skipped (the job runs rather than waits forever).
local function slots_free(key, cap)
  local n = redis.pcall('SCARD', key)
  if failed(n) then note_broken(key, n) return true end
  if n < cap then return true end
  -- Full: drop the ids whose lease is gone (finished, retried, dead-lettered, or their worker died and the
  -- lease lapsed): a slot is tied to its job's lease, so a killed worker's slots come back with the leases.
  for _, id in ipairs(redis.call('SMEMBERS', key)) do
    if redis.call('EXISTS', ip_prefix .. id) == 0 then
      redis.call('SREM', key, id)
      n = n - 1
    end
  end
  return n < cap
end

-- Rates run on Redis's clock, read once per claim: one clock for the whole fleet, so a host whose clock runs
-- ahead cannot start more than the limit, and the order of claims is the order of their times.
local rnow
local function redis_now()
  if rnow == nil then
    local t = redis.call('TIME')
    rnow = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return rnow
end

local function rate_ok(key, T, tau)
  local tat = redis.pcall('GET', key)
  if failed(tat) then note_broken(key, tat) return true end
  tat = tonumber(tat or '0') or 0
  local rn = redis_now()
  if rn < tat - tau then
    note_due(now + math.ceil(tat - tau - rn))  -- in the worker's clock, as the reply's other times
    return false
  end
  return true
end

local function rate_take(key, T, tau)
  local rn = redis_now()
  local tat = math.max(tonumber(redis.pcall('GET', key)) or 0, rn) + T
  redis.pcall('SET', key, string.format('%.3f', tat), 'PX', string.format('%d', tat - rn + tau + 1000))
end

local function flow_limits(suffix)
  local task = string.match(suffix, '#f:(.*)$')
  local L = task and limits[task]
  if not L then return nil end
  local tenant = string.match(suffix, '^#t:([^#]*)') or 'default'
  return {L = L, rate = rate_prefix .. task, trate = rate_prefix .. task .. '#t:' .. tenant,
          cap = inflight_prefix .. task, tcap = inflight_prefix .. task .. '#t:' .. tenant}
end

local function admit(fl)
  if not fl then return true end
  local L = fl.L
  if L[1] > 0 and not rate_ok(fl.rate, L[1], L[2]) then return false end
  if L[3] > 0 and not rate_ok(fl.trate, L[3], L[4]) then return false end
  if (L[5] > 0 and not slots_free(fl.cap, L[5])) or (L[6] > 0 and not slots_free(fl.tcap, L[6])) then
    note_due(now + CAP_RECHECK)
    return false
  end
  return true
end

local function admitted(fl, id)
  if not fl then return end
  local L = fl.L
  if L[1] > 0 then rate_take(fl.rate, L[1], L[2]) end
  if L[3] > 0 then rate_take(fl.trate, L[3], L[4]) end
  if L[5] > 0 then redis.pcall('SADD', fl.cap, id) end
  if L[6] > 0 then redis.pcall('SADD', fl.tcap, id) end
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

local function claim_one(i, lane, queue, id, score, suffix)
  local claimed = claimed_prefix .. queue
  if not recovering and not broken[claimed] then
    local prev = redis.pcall('HEXISTS', claimed, id)
    if prev == 1 then
      redis.call('ZADD', lane, 'XX', hold, id)  -- its owner may be reconnecting: wait for the window to end
      return false
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
    return false
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
  out[#out + 1] = suffix
  got = got + 1
  return true
end

-- Weighted round-robin over a lane's flows (see the header). Flows with nothing ready move back one turn, an
-- empty one leaves the ring (enqueue puts it back), a refused one waits for this claim's end.
local weights = {}
local function weight_of(queue, suffix)
  local tenant = string.match(suffix, '^#t:([^#]*)') or 'default'
  local k = queue .. '|' .. tenant
  if weights[k] == nil then
    local w = redis.pcall('HGET', weight_prefix .. queue, tenant)
    if failed(w) then note_broken(weight_prefix .. queue, w) w = false end
    w = tonumber(w or '1') or 1
    if w <= 0 then w = 1 end
    weights[k] = w
  end
  return weights[k]
end

local function fair_claim(i, lane, queue, ring)
  local r = redis.pcall('ZRANGE', ring, 0, SCAN - 1, 'WITHSCORES')
  if failed(r) then
    note_broken(ring, r)
    return false
  end
  local flows, seen, has_base = {}, {}, false
  for k = 1, #r, 2 do
    flows[#flows + 1] = {s = r[k], pass = tonumber(r[k + 1]) or 0}
    seen[r[k]] = true
    if r[k] == '' then has_base = true end
  end
  local vt = flows[1] and flows[1].pass or 0
  if not has_base then  -- the lane itself (arq producers, jobs without a tenant) joins once it has a ready job
    local h = redis.pcall('ZRANGEBYSCORE', lane, '-inf', now, 'LIMIT', 0, 1)
    if not failed(h) and h[1] and redis.call('ZADD', ring, 'NX', vt, '') == 1 then
      flows[#flows + 1] = {s = '', pass = vt}
      seen[''] = true
    end
  end
  -- When every flow read so far has nothing to give (nothing ready, or refused by a limit), read the next SCAN
  -- flows, up to PAGES pages: many idle or limited flows at the front cannot hide a ready one behind them.
  local page_len, from, removed = #r / 2, #r / 2, 0
  local function next_page()
    if page_len < SCAN or from >= SCAN * PAGES then return false end
    local more = redis.call('ZRANGE', ring, from - removed, from - removed + SCAN - 1, 'WITHSCORES')
    page_len, from = #more / 2, from + #more / 2
    local added = false
    for k = 1, #more, 2 do
      if not seen[more[k]] then
        seen[more[k]] = true
        flows[#flows + 1] = {s = more[k], pass = tonumber(more[k + 1]) or 0}
        added = true
      end
    end
    return added or page_len == SCAN
  end
  local guard = 4 * want + 2 * SCAN * PAGES + 8
  while got < want and guard > 0 do
    guard = guard - 1
    local best
    for _, f in ipairs(flows) do
      if not f.out and (best == nil or f.pass < best.pass) then best = f end
    end
    if best == nil and not next_page() then break end
    if best ~= nil then
      local sub = lane .. best.s
      local ready = redis.pcall('ZRANGEBYSCORE', sub, '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1)
      if failed(ready) then
        note_broken(sub, ready)
        best.out = true
      elseif not ready[1] then
        local first = redis.call('ZRANGE', sub, 0, 0, 'WITHSCORES')
        if first[2] then
          note_due(math.max(now, math.min(tonumber(first[2]) or now, now + 3600000)))
          best.pass = best.pass + 1 / weight_of(queue, best.s)
          best.moved = true
        else
          redis.call('ZREM', ring, best.s)
          removed = removed + 1
        end
        best.out = true
      else
        local fl = flow_limits(best.s)
        if not admit(fl) then
          best.out = true
        elseif claim_one(i, sub, queue, ready[1], ready[2], best.s) then
          admitted(fl, ready[1])
          best.pass = best.pass + 1 / weight_of(queue, best.s)
          best.moved = true
        end
      end
    end
  end
  for _, f in ipairs(flows) do
    if f.moved then redis.call('ZADD', ring, 'XX', f.pass, f.s) end
  end
  return true
end

for i, lane in ipairs(KEYS) do
  if got >= want then break end
  local queue = ARGV[Q + i]
  if not paused[queue] then
    local ring = fair_prefix .. lane
    if not (redis.call('EXISTS', ring) == 1 and fair_claim(i, lane, queue, ring)) then
      local ready = redis.pcall('ZRANGEBYSCORE', lane, '-inf', now, 'WITHSCORES', 'LIMIT', 0, want - got)
      if failed(ready) then
        note_broken(lane, ready)
      else
        for k = 1, #ready, 2 do
          claim_one(i, lane, queue, ready[k], ready[k + 1], '')
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
  if soonest >= 0 and (next_due < 0 or soonest < next_due) then next_due = soonest end
  out[1] = next_due
end
return out
