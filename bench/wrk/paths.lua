-- GET a random line of the file named by $WRK_PATHS (ids or list-page paths written by
-- the harness from the data it seeded), so every request reads a different row.
dofile(os.getenv("WRK_DIR") .. "/report.lua")

local paths = {}
for line in io.lines(os.getenv("WRK_PATHS")) do
  paths[#paths + 1] = line
end

local next_id = 1
function setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
end

function init(args)
  math.randomseed(os.time() * 1000 + (thread_id or 0))
end

function request()
  return wrk.format("GET", paths[math.random(#paths)])
end
