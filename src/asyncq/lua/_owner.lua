-- Shared by finish, renew, requeue and dead_letter (prepended by scripts.py): may this worker settle the job?
-- Yes while it holds the lease token. Also when the lease lapsed (a Redis outage, a stalled loop) but nobody
-- claimed the job since: the retry counter still has the value this worker's claim gave it (its generation)
-- and the job is still recorded as claimed. Any other claim bumps the counter, so an outcome is never written
-- over a re-run's. pcall: a key of the wrong type means "not ours", never a script error.
local function asyncq_owns(ip_key, token, retry_key, gen, claimed_key, id)
  local holder = redis.pcall('GET', ip_key)
  if type(holder) == 'table' then return false end
  if holder then return holder == token end
  if gen <= 0 then return false end
  local counter = redis.pcall('GET', retry_key)
  if type(counter) == 'table' or tonumber(counter) ~= gen then return false end
  return redis.pcall('HEXISTS', claimed_key, id) == 1
end

