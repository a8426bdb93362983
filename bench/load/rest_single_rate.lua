-- rest_single.lua at a fixed request rate (open loop across the connections): the 5th argument after -- is the rate in
-- requests/s for each wrk thread. Each request takes the next slot of one schedule; a connection waits for
-- its slot, so the offered rate does not bend to the server's answers while a connection is free.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "rest_single.lua")

local base_init = init
local interval_us, next_due

function init(args)
  base_init(args)
  interval_us = 1000000 / tonumber(args[5])
end

function delay()
  local now = now_us()
  next_due = next_due or now
  local wait = next_due - now
  next_due = next_due + interval_us
  return wait > 0 and math.floor(wait / 1000) or 0
end
