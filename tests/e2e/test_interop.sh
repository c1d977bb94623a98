#!/usr/bin/env bash
# test_interop.sh — files cross between ddplab and Python both ways: ddplab writes
# .safetensors and .npy that numpy (np.load) and, when importable, the `safetensors`
# package read back exactly; files numpy/safetensors write are read by ddplab exactly.
# Without the reference `safetensors` package the Python side parses and writes the
# format by hand (struct + json), which still checks every byte of the layout.
# Skips (exit 0) when the Python has no numpy. DDP_PYTHON picks another interpreter.
set -euo pipefail

: "${DDPLAB:?set DDPLAB to the ddplab binary}"
PY=${DDP_PYTHON:-/usr/bin/python3}
if ! "$PY" -c 'import numpy' 2>/dev/null; then
    echo "skipped: numpy not installed for $PY (Debian: python3-numpy)"
    exit 0
fi

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export INTEROP_DIR=$dir

# ---- ddplab writes ------------------------------------------------------------------
cat >"$dir/write.lua" <<'LUA'
local dir = assert(os.getenv("INTEROP_DIR"))
local m = torch.arange(12):view(3, 4):float()
torch.save({
    w = m,
    t = m:t(),
    i = torch.arange(5) - 2,
    d = torch.tensor(1.5):double(),
    b = torch.arange(4):gt(1),
    e = torch.zeros(0, 3),
}, dir .. "/ours.safetensors")
torch.save(m:t(), dir .. "/ours_t.npy")
torch.save(torch.arange(5) - 2, dir .. "/ours_i.npy")
torch.save(torch.tensor(1.5):double(), dir .. "/ours_d.npy")
torch.save(torch.arange(4):gt(1), dir .. "/ours_b.npy")
LUA
"$DDPLAB" -n 1 "$dir/write.lua"

"$PY" - <<'PYEOF'
import json, os, struct
import numpy as np

d = os.environ["INTEROP_DIR"]
m = np.arange(12, dtype=np.float32).reshape(3, 4)
want = {"w": m, "t": m.T, "i": np.arange(5, dtype=np.int64) - 2,
        "d": np.array(1.5, dtype=np.float64), "b": np.arange(4) > 1,
        "e": np.zeros((0, 3), np.float32)}

def check(name, got, exp):
    assert got.dtype == exp.dtype, f"{name}: dtype {got.dtype}, want {exp.dtype}"
    assert got.shape == exp.shape, f"{name}: shape {got.shape}, want {exp.shape}"
    assert np.array_equal(got, exp), f"{name}: values {got!r}, want {exp!r}"

for key, arr in [("t", want["t"]), ("i", want["i"]), ("d", want["d"]), ("b", want["b"])]:
    check(f"ours_{key}.npy", np.load(os.path.join(d, f"ours_{key}.npy")), arr)

path = os.path.join(d, "ours.safetensors")
try:
    from safetensors.numpy import load_file
    got = load_file(path)
    print("interop: read ddplab's safetensors with the safetensors package")
except ImportError:
    codes = {"F32": "<f4", "F64": "<f8", "I64": "<i8", "BOOL": "|b1"}
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0, f"header length {n} is not padded to 8"
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    got, end = {}, 0
    for name, e in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
        b, f = e["data_offsets"]
        assert b == end, f"{name}: data starts at {b}, previous ended at {end}"
        end = f
        got[name] = np.frombuffer(raw[8 + n + b:8 + n + f], dtype=codes[e["dtype"]]).reshape(e["shape"])
    assert 8 + n + end == len(raw), "bytes after the last tensor"
    print("interop: read ddplab's safetensors by hand (no safetensors package)")
assert sorted(got) == sorted(want), f"names {sorted(got)}"
for name, arr in want.items():
    check(f"ours.safetensors[{name}]", got[name], arr)
print("interop: numpy reads what ddplab wrote")

# ---- Python writes ------------------------------------------------------------------
tensors = {"z.last": np.arange(6, dtype=np.float32).reshape(2, 3) / 4,
           "a.first": np.array([7, -8, 9], dtype=np.int64),
           "flag": np.array([True, False, True]),
           "half": np.array([[0.5], [0.25]], dtype=np.float64),
           "none": np.zeros((2, 0), np.float32)}
path = os.path.join(d, "theirs.safetensors")
try:
    from safetensors.numpy import save_file
    save_file(tensors, path, metadata={"written_by": "safetensors"})
except ImportError:
    codes = {np.dtype("float32"): "F32", np.dtype("float64"): "F64",
             np.dtype("int64"): "I64", np.dtype("bool"): "BOOL"}
    header, blobs, off = {"__metadata__": {"written_by": "hand"}}, [], 0
    for name in sorted(tensors):  # sorted, unlike ddplab's order: the reader must not care
        a = np.ascontiguousarray(tensors[name])
        header[name] = {"dtype": codes[a.dtype], "shape": list(a.shape),
                        "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
np.save(os.path.join(d, "theirs_f.npy"), np.arange(12, dtype=np.float32).reshape(3, 4) - 5)
np.save(os.path.join(d, "theirs_i.npy"), np.arange(4))  # int64 on Linux
np.save(os.path.join(d, "theirs_s.npy"), np.float64(2.25))
np.save(os.path.join(d, "theirs_b.npy"), np.array([[True], [False]]))
np.save(os.path.join(d, "theirs_fortran.npy"), np.asfortranarray(np.ones((2, 3))))
PYEOF

# ---- ddplab reads -------------------------------------------------------------------
cat >"$dir/read.lua" <<'LUA'
local dir = assert(os.getenv("INTEROP_DIR"))
local function same(got, want, what)
    assert(tostring(got.dtype) == tostring(want.dtype), what .. ": dtype " .. tostring(got.dtype))
    assert(tostring(got.shape) == tostring(want.shape), what .. ": shape " .. tostring(got.shape))
    assert(got:equal(want), what .. ": values differ")
end
local sd = torch.load(dir .. "/theirs.safetensors")
same(sd["z.last"], torch.arange(6):view(2, 3):float() / 4, "z.last")
same(sd["a.first"], torch.tensor({7, -8, 9}):long(), "a.first")
same(sd.flag, torch.tensor({1, 0, 1}):gt(0), "flag")
same(sd.half, torch.tensor({{0.5}, {0.25}}):double(), "half")
same(sd.none, torch.zeros(2, 0), "none")
same(torch.load(dir .. "/theirs_f.npy"), torch.arange(12):view(3, 4):float() - 5, "theirs_f")
same(torch.load(dir .. "/theirs_i.npy"), torch.arange(4), "theirs_i")
same(torch.load(dir .. "/theirs_s.npy"), torch.tensor(2.25):double(), "theirs_s")
same(torch.load(dir .. "/theirs_b.npy"), torch.tensor({{1}, {0}}):gt(0), "theirs_b")
local ok, err = pcall(torch.load, dir .. "/theirs_fortran.npy")
assert(not ok and tostring(err):find("Fortran", 1, true), "Fortran order: " .. tostring(err))
print("interop: ddplab reads what numpy wrote")
LUA
"$DDPLAB" -n 1 "$dir/read.lua"

# ---- checkpoints: an optimizer's state dict both ways ----------------------------------
cat >"$dir/opt.lua" <<'LUA'
local dir = assert(os.getenv("INTEROP_DIR"))
local model = nn.Linear(3, 2)
local opt = optim.Adam(model:parameters(), {lr = 0.01})
nn.MSELoss()(model(torch.ones(4, 3)), torch.zeros(4, 2)):backward()
opt:step()
torch.save(opt:state_dict(), dir .. "/opt.safetensors")
LUA
"$DDPLAB" -n 1 "$dir/opt.lua"
"$PY" - <<'PYEOF'
import json, os, struct
d = os.environ["INTEROP_DIR"]
raw = open(os.path.join(d, "opt.safetensors"), "rb").read()
(n,) = struct.unpack("<Q", raw[:8])
header = json.loads(raw[8:8 + n])
meta = header.pop("__metadata__")
assert all(isinstance(v, str) for v in meta.values()), "metadata values must be strings"
groups = json.loads(meta["param_groups"])
assert groups == [{"amsgrad": False, "betas": [0.9, 0.999], "eps": 1e-08, "lr": 0.01,
                   "params": [0, 1], "weight_decay": 0}], groups
assert isinstance(groups[0]["lr"], float) and isinstance(groups[0]["params"][0], int)
state = json.loads(meta["state"])
assert state["0"]["step"] == 1, state
ref = state["0"]["exp_avg"]["__tensor__"]
assert header[ref]["shape"] == [2, 3] and header[ref]["dtype"] == "F32", header[ref]
assert header[state["1"]["exp_avg_sq"]["__tensor__"]]["shape"] == [2]
# Python writes one: param_groups from JSON, ddplab reads them with their types
text = json.dumps({"__metadata__": {"param_groups": json.dumps([{"lr": 1, "momentum": 0.5,
                   "params": [0], "nesterov": True}]), "ddplab.keys": json.dumps(["param_groups"])}})
text += " " * (-len(text) % 8)
with open(os.path.join(d, "theirs_opt.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text.encode())
print("interop: Python reads ddplab's optimizer checkpoint")
PYEOF
cat >"$dir/read_opt.lua" <<'LUA'
local g = torch.load(assert(os.getenv("INTEROP_DIR")) .. "/theirs_opt.safetensors").param_groups[1]
assert(math.type(g.lr) == "integer" and math.type(g.momentum) == "float", "number types")
assert(g.nesterov == true and g.params[1] == 0, "values")
print("interop: ddplab reads param_groups Python wrote")
LUA
"$DDPLAB" -n 1 "$dir/read_opt.lua"
echo "interop: ok"
