#!/usr/bin/env python3
"""gen_seeds.py — writes the hand-made seed inputs of tests/fuzz/corpus/ (small, valid or
nearly valid inputs for each target, so the fuzzer starts from the real formats). Crash
inputs found later are added beside them by hand, named crash-*, and kept for ever.
Run from anywhere: python3 tests/fuzz/gen_seeds.py"""
import io, json, os, struct

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    d = os.path.join(HERE, "fuzz_" + target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- control channel: 8-byte header (u32 BE length, type, 0 0 0), then the payload
def frame(t, payload):
    return struct.pack(">IB3x", len(payload), t) + payload

HELLO, OUTPUT, DONE, ERROR, RUN, EVENT, RANK_EXIT = 1, 2, 3, 4, 8, 18, 14
put("protocol", "hello", b"\x07" + frame(HELLO, b"0\x001234\x00host\x00cpu"))
put("protocol", "run", b"\x00" + frame(RUN, b"7\x0011\x00=stdin\x00print(1)") + frame(DONE, b""))
put("protocol", "events", b"\x03" + frame(EVENT, b"verdict\x00pass\x00well done")
    + frame(EVENT, b"progress\x003\x0010\x00epoch") + frame(EVENT, b"ended"))
put("protocol", "output", b"\xff" + frame(OUTPUT, b"hello\n" * 20) + frame(RANK_EXIT, b"1\x00256"))
put("protocol", "bad_header", b"\x01" + struct.pack(">IB3x", 1 << 30, OUTPUT))


# ---- store: 13-byte request (op, u32 LE key length, u32 LE value length, u32 LE wait ms)
def req(op, key, value=b"", wait=0):
    return struct.pack("<BIII", op, len(key), len(value), wait) + key + value

SET, GET, ADD, CHECK, DELETE, MULTI, EXCHANGE = range(1, 8)
def keys(*ks):
    return b"".join(struct.pack("<I", len(k)) + k for k in ks)
put("store", "set_get", b"\x00" + req(SET, b"a", b"xyz") + req(GET, b"a", wait=5)
    + req(CHECK, b"a") + req(DELETE, b"a") + req(GET, b"a", wait=1))
put("store", "add", b"\x00" + req(ADD, b"n", struct.pack("<q", 3)) + req(ADD, b"n", struct.pack("<q", -1)))
put("store", "multi", b"\x00" + req(SET, b"k0", b"1") + req(MULTI, b"", keys(b"k0", b"k1"), wait=1))
put("store", "exchange", b"\x00" + req(EXCHANGE, b"fp/0", struct.pack("<I", 3) + b"abc"
    + struct.pack("<I", 4) + b"fp/9" + keys(b"fp/0", b"fp/1"), wait=1))
put("store", "auth_wrong", b"\x01" + bytes(32) + req(SET, b"a", b"b"))

# ---- safetensors: u64 LE header length, JSON header, data
def st(header, data):
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data
put("safetensors", "two", st({"__metadata__": {"format": "pt"},
    "w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
    "b": {"dtype": "I64", "shape": [1], "data_offsets": [16, 24]}},
    struct.pack("<4f", 1, 2, 3, 4) + struct.pack("<q", 7)))
put("safetensors", "scalar_bool", st({"s": {"dtype": "F64", "shape": [], "data_offsets": [0, 8]},
    "m": {"dtype": "BOOL", "shape": [3], "data_offsets": [8, 11]}}, struct.pack("<d", 0.5) + b"\x01\x00\x01"))
put("safetensors", "empty", st({"e": {"dtype": "F32", "shape": [0, 3], "data_offsets": [0, 0]}}, b""))

# ---- npy: magic, version, u16/u32 header length, Python-literal header padded to 64
def npy(descr, shape, data, version=1, fortran=False):
    h = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, fortran, repr(tuple(shape)))
    lenfmt = "<H" if version == 1 else "<I"
    pre = 6 + 2 + struct.calcsize(lenfmt)
    pad = 64 - (pre + len(h) + 1) % 64
    h = (h + " " * pad + "\n").encode()
    return b"\x93NUMPY" + bytes([version, 0]) + struct.pack(lenfmt, len(h)) + h + data
put("npy", "f4", npy("<f4", [2, 3], struct.pack("<6f", *range(6))))
put("npy", "i8_v2", npy("<i8", [2], struct.pack("<2q", 1, -1), version=2))
put("npy", "b1_scalar", npy("|b1", [], b"\x01"))
put("npy", "f8_fortran", npy("<f8", [1, 2], struct.pack("<2d", 1, 2), fortran=True))

# ---- command line: argv words separated by NUL bytes
for name, words in {
    "repl": ["-n", "2"],
    "script": ["-n", "4", "--backend", "gloo", "train.lua", "--lr", "0.1"],
    "multinode": ["--nnodes", "2", "--node-rank", "1", "--master-addr", "10.0.0.1", "--master-port", "29500"],
    "chunks": ["-e", "print(1)", "-e", "x=2", "-i", "--collective-timeout", "2.5", "--no-collective-check"],
    "lessons": ["--verify-lessons", "3"],
    "eq": ["--nproc-per-node=3", "--lesson=1"],
}.items():
    put("cli", name, "\0".join(words).encode())
