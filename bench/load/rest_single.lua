-- wrk script: cameras posting one detection per request to /api/v1/ingest/ (and, unchanged, to the bare view).
--
--   wrk -t1 -cN -dDs -s bench/load/rest_single.lua URL -- CAMERAS_FILE LOG_PREFIX NONCE HEALTH_EVERY
--
-- The traffic model of traffic.js (cars read 2-4 times, 1 read in 10 misread, 1 car in 200 on the watchlist,
-- 1 message in HEALTH_EVERY a health report), one camera after another. The capture time is the send time.
-- CAMERAS_FILE holds one "device_id key" per line. Each wrk thread writes LOG_PREFIX.<thread>:
-- "s message_id kind send_us" when a request is made and "a message_id ack_us status" when its answer comes.
-- message_ids are NONCE-thread-counter, so every id is unique within a run.
-- rest_single_rate.lua adds a fixed request rate on top of this script.

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clock_id, bench_timespec *tp);
]]
local clock = ffi.new("bench_timespec")

function now_us()
  ffi.C.clock_gettime(0, clock) -- CLOCK_REALTIME, as Node's performance.timeOrigin + now()
  return tonumber(clock.tv_sec) * 1000000 + math.floor(tonumber(clock.tv_nsec) / 1000)
end

local LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"
local CONFUSABLE = { B = "8", ["8"] = "B", O = "0", ["0"] = "O", S = "5", ["5"] = "S", Z = "2", ["2"] = "Z",
                     G = "6", ["6"] = "G", I = "1", ["1"] = "I" }

local thread_count = 0

function setup(thread)
  thread:set("thread_id", thread_count)
  thread_count = thread_count + 1
end

local cameras, log, nonce, counter, health_every = {}, nil, 0, 0, 0

function init(args)
  for line in io.lines(args[1]) do
    local id, key = line:match("^(%S+) (%S+)$")
    table.insert(cameras, { id = id, key = key, sequence = 0, reads_left = 0, plate = "", direction = "" })
  end
  log = io.open(args[2] .. "." .. thread_id, "w")
  log:setvbuf("line") -- wrk never closes a thread's Lua state, so nothing may wait in a buffer at exit
  nonce = tonumber(args[3])
  health_every = tonumber(args[4])
  math.randomseed(nonce + thread_id)
end

local function letter() local i = math.random(#LETTERS) return LETTERS:sub(i, i) end

local function new_plate()
  if math.random() < 0.005 then return string.format("WA%03dNT", math.random(0, 999)) end
  return letter() .. letter() .. string.format("%03d", math.random(0, 999)) .. letter() .. letter()
end

local function misread(plate)
  local spots = {}
  for i = 1, #plate do if CONFUSABLE[plate:sub(i, i)] then table.insert(spots, i) end end
  if #spots == 0 then return plate end
  local i = spots[math.random(#spots)]
  return plate:sub(1, i - 1) .. CONFUSABLE[plate:sub(i, i)] .. plate:sub(i + 1)
end

local function iso(us)
  return os.date("!%Y-%m-%dT%H:%M:%S", math.floor(us / 1000000)) .. string.format(".%06dZ", us % 1000000)
end

local function payload(camera)
  camera.sequence = camera.sequence + 1
  if camera.sequence % health_every == 0 then
    return "health", string.format('{"cpu_percent":%.1f,"temperature_c":41.5,"fps":25,"queue_depth":0,'
      .. '"firmware":"bench-1.0","network":{"latency_ms":12,"packet_loss":0,"bandwidth_kbps":20000}}', math.random() * 60)
  end
  if camera.reads_left == 0 then
    camera.plate, camera.reads_left = new_plate(), math.random(2, 4)
    camera.direction = math.random() < 0.5 and "approaching" or "receding"
  end
  camera.reads_left = camera.reads_left - 1
  local plate = math.random() < 0.1 and misread(camera.plate) or camera.plate
  return "detection", string.format('{"plate":"%s","confidence":%.3f,"region":"de","direction":"%s",'
    .. '"bbox":{"x":812,"y":440,"w":180,"h":44},"vehicle":{"type":"car","color":"grey","confidence":0.8}}',
    plate, 0.7 + math.random() * 0.3, camera.direction)
end

function request()
  counter = counter + 1
  local camera = cameras[(counter + thread_id) % #cameras + 1]
  local data_type, body = payload(camera)
  local id = string.format("%08x-%04x-4000-a000-%012x", nonce, thread_id, counter)
  local sent = now_us()
  log:write("s ", id, " ", data_type == "detection" and "d" or "h", " ", string.format("%.0f", sent), "\n")
  local envelope = string.format('{"message_id":"%s","timestamp":"%s","protocol":"rest","edge_device_id":"%s",'
    .. '"data_type":"%s","sequence":%d,"payload":%s}', id, iso(sent), camera.id, data_type, camera.sequence, body)
  return wrk.format("POST", nil, { ["Authorization"] = "Device " .. camera.key, ["Content-Type"] = "application/json" },
    envelope)
end

function response(status, headers, body)
  local id = body:match('"message_id": ?"([^"]+)"')
  local state = body:match('"status": ?"([^"]+)"') or ("http" .. status)
  log:write("a ", id or "-", " ", string.format("%.0f", now_us()), " ", state, "\n")
end

function done(summary, latency, requests)
  io.write(string.format('{"requests": %d, "errors": %d, "p50_us": %d, "p99_us": %d}\n', summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
