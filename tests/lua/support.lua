-- support.lua — tiny assertion helpers for the Lua tests (tests/lua/test_*.lua).
--
--   local T = require "support"
--   T.test("adds", function() T.eq(1 + 1, 2) end)
--   T.done()   -- prints "12 passed, 0 failed" and raises if any failed
--
-- A failed check raises an error with the caller's line; T.test catches it, prints it
-- with the test's name and goes on, so one run shows every failure.
local M = {}

local passed, failed = 0, 0

local function fail(msg, level)
  error(msg, (level or 2) + 1)
end

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

-- Runs fn as one named test.
function M.test(name, fn)
  local ok, err = xpcall(fn, debug.traceback)
  if ok then
    passed = passed + 1
  else
    failed = failed + 1
    print("FAIL " .. name .. ": " .. tostring(err))
  end
end

-- a == b (raw equality, or element-wise for two Lua lists of plain values).
function M.eq(a, b, msg)
  if type(a) == "table" and type(b) == "table" and not torch.is_tensor(a) then
    if #a ~= #b then fail((msg or "eq") .. ": lengths " .. #a .. " and " .. #b) end
    for i = 1, #a do M.eq(a[i], b[i], (msg or "eq") .. "[" .. i .. "]") end
    return
  end
  if a ~= b then fail((msg or "eq") .. ": got " .. show(a) .. ", expected " .. show(b)) end
end

function M.is_true(v, msg)
  if not v then fail(msg or "expected a true value") end
end

-- |a - b| <= tol * max(1, |b|) for numbers; for tensors, everywhere (same shape).
function M.close(a, b, tol, msg)
  tol = tol or 1e-5
  msg = msg or "close"
  if torch.is_tensor(a) or torch.is_tensor(b) then
    if not torch.is_tensor(b) then b = torch.tensor(b, {dtype = a.dtype}) end
    if not torch.is_tensor(a) then a = torch.tensor(a, {dtype = b.dtype}) end
    if not (a.shape == b.shape) then
      fail(msg .. ": shapes " .. tostring(a.shape) .. " and " .. tostring(b.shape))
    end
    local diff = (a:double() - b:double()):abs():max():item()
    local scale = math.max(1, b:double():abs():max():item())
    if diff > tol * scale then
      fail(string.format("%s: max difference %.3g > %.3g\n  got %s\n  expected %s", msg, diff,
                         tol * scale, tostring(a), tostring(b)))
    end
    return
  end
  if type(a) ~= "number" or type(b) ~= "number" or math.abs(a - b) > tol * math.max(1, math.abs(b)) then
    fail(msg .. ": got " .. show(a) .. ", expected " .. show(b) .. " (tol " .. tol .. ")")
  end
end

-- `out` (a string) contains / does not contain `text` (plain text, not a pattern).
function M.has(out, text)
  if not out:find(text, 1, true) then
    fail("expected " .. string.format("%q", text) .. " in:\n" .. out)
  end
end

function M.lacks(out, text)
  if out:find(text, 1, true) then
    fail("did not expect " .. string.format("%q", text) .. " in:\n" .. out)
  end
end

-- fn() must raise an error whose message contains `text` (plain text, not a pattern).
function M.raises(fn, text, msg)
  local ok, err = pcall(fn)
  if ok then fail((msg or "raises") .. ": expected an error containing " .. show(text)) end
  err = tostring(err)
  if text and not err:find(text, 1, true) then
    fail((msg or "raises") .. ": error " .. show(err) .. " does not contain " .. show(text))
  end
  return err
end

-- Single-quotes s for the shell.
function M.shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- This very binary: the parent of the shell that io.popen starts is this rank.
function M.ddplab_binary()
  local p = assert(io.popen("readlink /proc/$PPID/exe"))
  local exe = p:read("l")
  p:close()
  return exe
end

-- Runs `ddplab ARGS < input` in a clean environment (no rank variables, no colour, 80
-- columns unless extra_env says otherwise, a private state folder for the transcript) and
-- returns stdout and stderr together, and the exit status. extra_env: {"NAME=value", ...}.
function M.run_ddplab(args, input, extra_env)
  local q = M.shell_quote
  local base = os.tmpname()
  local f = assert(io.open(base .. ".in", "w"))
  f:write(input or "")
  f:close()
  local env = {"HOME=" .. q(os.getenv("HOME") or "/tmp"),
               "PATH=" .. q(os.getenv("PATH") or "/usr/bin:/bin"),
               "XDG_STATE_HOME=" .. q(base .. ".state"), "NO_COLOR=1", "COLUMNS=80"}
  for _, name in ipairs({"ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS"}) do
    if os.getenv(name) then env[#env + 1] = name .. "=" .. q(os.getenv(name)) end
  end
  for _, kv in ipairs(extra_env or {}) do env[#env + 1] = q(kv) end -- later ones win
  local cmd = string.format("env -i %s %s %s < %s 2>&1", table.concat(env, " "),
                            q(M.ddplab_binary()), args, q(base .. ".in"))
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local _, _, status = p:close()
  os.execute("rm -rf " .. q(base .. ".state"))
  os.remove(base .. ".in")
  os.remove(base)
  return out, status
end

-- Prints the summary line and raises when a test failed.
function M.done()
  print(string.format("%d passed, %d failed", passed, failed))
  if failed > 0 then error(failed .. " test(s) failed", 0) end
end

return M
