-- test_io.lua — torch.save / torch.load from Lua: round trips of state dicts
-- (.safetensors) and single tensors (.npy) for every dtype and odd shape, a model saved
-- and restored, files written by PyTorch (the parity fixtures) read back, and corrupt
-- files surfacing as Lua errors that name the file instead of crashing.

local base = os.tmpname() -- a fresh private name; the files below sit beside it
local made = { base }
local function tmp(suffix)
    local p = base .. suffix
    made[#made + 1] = p
    return p
end

local function write_file(path, bytes)
    local f = assert(io.open(path, "wb"))
    f:write(bytes)
    f:close()
end

local function read_file(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("a")
    f:close()
    return s
end

local function same(a, b, what)
    assert(tostring(a.dtype) == tostring(b.dtype),
        what .. ": dtype " .. tostring(a.dtype) .. " vs " .. tostring(b.dtype))
    assert(tostring(a.shape) == tostring(b.shape),
        what .. ": shape " .. tostring(a.shape) .. " vs " .. tostring(b.shape))
    assert(a:equal(b), what .. ": values differ")
end

-- Calls torch.load(path) and checks it fails with a message naming the file and `word`.
local function load_fails(path, word, what)
    local ok, err = pcall(torch.load, path)
    assert(not ok, what .. ": torch.load accepted a corrupt file")
    err = tostring(err)
    assert(err:find(path, 1, true), what .. ": the error does not name the file: " .. err)
    assert(err:find(word, 1, true), what .. ": expected '" .. word .. "' in: " .. err)
end

local function u64le(n)
    local s = {}
    for i = 1, 8 do
        s[i] = string.char(n % 256)
        n = n // 256
    end
    return table.concat(s)
end

-- ---- a state dict of every dtype and odd shape --------------------------------------

torch.manual_seed(0)
local m = torch.randn(3, 4)
local sd = {
    weight = torch.randn(4, 5),
    double = torch.randn(3):double(),
    steps = torch.arange(6):view(2, 3),
    mask = torch.randn(5):gt(0),
    scalar = torch.tensor(2.5),
    empty = torch.zeros(0, 3),
    transposed = m:t(), -- not contiguous: saved in logical order
    narrowed = m:narrow(1, 1, 2),
}
local path = tmp(".safetensors")
torch.save(sd, path)
local back = torch.load(path)
local n = 0
for k, v in pairs(sd) do
    same(back[k], v, "safetensors round trip of " .. k)
    n = n + 1
end
for _ in pairs(back) do n = n - 1 end
assert(n == 0, "torch.load returned extra or missing entries")
assert(back.steps.dtype == sd.steps.dtype, "int64 came back as " .. tostring(back.steps.dtype))

-- ---- single tensors as .npy ----------------------------------------------------------

for name, t in pairs(sd) do
    local p = tmp("_" .. name .. ".npy")
    torch.save(t, p)
    same(torch.load(p), t, ".npy round trip of " .. name)
    assert(read_file(p):sub(1, 6) == "\x93NUMPY", ".npy magic missing for " .. name)
end

-- ---- a model saved and restored ------------------------------------------------------

local model = nn.Sequential(nn.Linear(5, 10), nn.ReLU(), nn.Linear(10, 5))
local mpath = tmp("_model.safetensors")
torch.save(model:state_dict(), mpath)
local copy = nn.Sequential(nn.Linear(5, 10), nn.ReLU(), nn.Linear(10, 5))
copy:load_state_dict(torch.load(mpath))
local x = torch.randn(4, 5)
assert(model(x):equal(copy(x)), "a reloaded model computes something else")

-- ---- a file PyTorch wrote ------------------------------------------------------------

local fixtures = os.getenv("DDP_TEST_FIXTURES")
if fixtures then
    local fx = torch.load(fixtures .. "/mlp_ce.safetensors")
    assert(tostring(fx["init.fc1.weight"].shape) == tostring(torch.zeros(10, 5).shape),
        "fc1.weight from PyTorch has shape " .. tostring(fx["init.fc1.weight"].shape))
    assert(fx.target.dtype == torch.arange(2).dtype, "int64 targets from PyTorch")
end

-- ---- corrupt and hostile files are Lua errors ----------------------------------------

local good = read_file(path)
local bad = tmp("_bad.safetensors")

write_file(bad, good:sub(1, #good - 3))
load_fails(bad, "truncated", "truncated data")
write_file(bad, good:sub(1, 20))
load_fails(bad, "truncated", "truncated header")
write_file(bad, good:sub(1, 5))
load_fails(bad, "only 5 bytes", "five bytes")
write_file(bad, u64le(1 << 40) .. "{}")
load_fails(bad, "100 MB", "absurd header length")
write_file(bad, u64le(7) .. "[1,2,3]")
load_fails(bad, "not a JSON object", "JSON array header")
local hdr = '{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}}'
write_file(bad, u64le(#hdr) .. hdr .. string.rep("\0", 8))
load_fails(bad, "16 bytes", "shape disagrees with offsets")
hdr = '{"a":{"dtype":"Q8","shape":[2],"data_offsets":[0,8]}}'
write_file(bad, u64le(#hdr) .. hdr .. string.rep("\0", 8))
load_fails(bad, "Q8", "unknown dtype")

local npy = tmp("_bad.npy")
local goodnpy = read_file(tmp("_weight.npy"))
write_file(npy, goodnpy:sub(1, #goodnpy - 1))
load_fails(npy, "truncated", "truncated .npy")
local dict = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }\n"
write_file(npy, "\x93NUMPY\x01\x00" .. string.char(#dict, 0) .. dict .. string.rep("\0", 16))
load_fails(npy, "Fortran order", "Fortran-order .npy")

local ok, err = pcall(torch.load, tmp("_does_not_exist.safetensors"))
assert(not ok and tostring(err):find("does_not_exist", 1, true), "missing file: " .. tostring(err))

-- A save whose target is not a regular file is refused and leaves it as it was (API fuzz
-- defect 7: the temporary file was renamed over the target, so ddp.io_core.write_npy to
-- "/dev/null", run as root, replaced the machine's /dev/null with a plain file).
local function save_refused(path, kind)
    for _, save in ipairs({function() torch.save(torch.zeros(2), path) end,
                           function() require("ddp.io_core").write_npy(path, torch.zeros(2)) end}) do
        local ok, err = pcall(save)
        assert(not ok, "a save over " .. kind .. " was accepted")
        assert(tostring(err):find("cannot write '" .. path .. "': it is not a regular file (" .. kind
                                  .. ")", 1, true), "unexpected error: " .. tostring(err))
    end
end
local quoted = "'" .. base .. "'"
if os.execute("mkfifo " .. quoted .. ".fifo.npy 2>/dev/null") then
    made[#made + 1] = base .. ".fifo.npy"
    save_refused(base .. ".fifo.npy", "a FIFO")
end
if os.execute("mknod " .. quoted .. ".null.npy c 1 3 2>/dev/null") then -- only as root
    made[#made + 1] = base .. ".null.npy"
    save_refused(base .. ".null.npy", "a device")
    local p = io.popen("stat -c %F " .. quoted .. ".null.npy")
    local kind = p:read("l")
    p:close()
    assert(kind == "character special file", "the device node became a " .. tostring(kind))
end

for _, p in ipairs(made) do os.remove(p) end
print("io: round trips and corrupt files ok")
