-- POST a new user per request; email and username are unique per run ($WRK_RUN),
-- thread and request, so every create succeeds with 201.
dofile(os.getenv("WRK_DIR") .. "/report.lua")

local run = os.getenv("WRK_RUN") or "run"
local counter = 0
local headers = { ["Content-Type"] = "application/json" }

local next_id = 1
function setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
end

function request()
  counter = counter + 1
  local name = string.format("%s-%d-%d", run, thread_id or 0, counter)
  local body = string.format(
    '{"first_name":"Load","last_name":"Test","email":"%s@bench.example.com","username":"%s"}',
    name, name)
  return wrk.format("POST", "/api/v1/users/", headers, body)
end
