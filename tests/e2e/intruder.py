#!/usr/bin/env python3
"""intruder.py — what test_intruders.sh throws at a multi-node session: connections that
never finish the handshake (slow-loris), garbage bytes, frames without the proof, a wrong
secret, a replayed proof, and the same against the store; and strangers on Gloo's ports.
Each mode prints one line saying what the intruder got back.

  intruder.py loris HOST PORT N SECONDS      N connections that send nothing
  intruder.py garbage HOST PORT              4 KiB of random bytes
  intruder.py nosecret HOST PORT             a RUN frame instead of the proof
  intruder.py wrong HOST PORT                the handshake with a wrong secret
  intruder.py replay HOST PORT SECRET_HEX    an honest handshake, then its proof replayed
  intruder.py store_garbage HOST PORT        random bytes to the store
  intruder.py store_wrong HOST PORT          the store's handshake with a wrong secret
  intruder.py gloo HOST PORT...              to each of Gloo's ports: garbage, then a hold

The control channel's handshake (src/runtime/protocol.c): the driver sends "DDPLAUT1" and
a 32-byte nonce; the peer answers its own nonce and HMAC-SHA512-256(key, 'c' | ns | nc);
the driver proves itself with the 's' tag. key = BLAKE2b-256(secret, key="ddplab-control").
"""
import hashlib, hmac, os, socket, struct, sys, time


def connect(host, port):
    deadline = time.time() + 30
    while True:
        try:
            return socket.create_connection((host, int(port)), timeout=5)
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.05)


def read_all(s, limit=8):
    s.settimeout(limit)
    got = b""
    try:
        while True:
            c = s.recv(4096)
            if not c:
                break
            got += c
    except OSError:
        pass
    return got


def recv_exact(s, n):
    got = b""
    while len(got) < n:
        c = s.recv(n - len(got))
        if not c:
            break
        got += c
    return got


def tag(key, role, ns, nc):
    return hmac.new(key, role + ns + nc, hashlib.sha512).digest()[:32]


def control_key(secret_hex):
    return hashlib.blake2b(bytes.fromhex(secret_hex), digest_size=32, key=b"ddplab-control").digest()


mode, host, port = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == "loris":
    n, seconds = int(sys.argv[4]), float(sys.argv[5])
    socks = [connect(host, port) for _ in range(n)]
    print("loris: %d connections open" % n, flush=True)
    time.sleep(seconds)
    closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            closed += s.recv(4096 * 4) == b"" or 0
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    print("loris: %d of %d closed by the driver" % (closed, n))
elif mode == "garbage":
    s = connect(host, port)
    s.sendall(os.urandom(4096))
    print("garbage: got %d bytes back, then closed" % len(read_all(s)))
elif mode == "nosecret":
    s = connect(host, port)
    hello = recv_exact(s, 40)
    run = b"7\x001111\x00=stdin\x00os.exit(42)"
    s.sendall(struct.pack(">IB3x", len(run), 8) + run)
    print("nosecret: challenge %d bytes, then %d" % (len(hello), len(read_all(s))))
elif mode == "wrong":
    s = connect(host, port)
    hello = recv_exact(s, 40)
    nc = os.urandom(32)
    s.sendall(nc + tag(control_key("00" * 32), b"c", hello[8:], nc))
    print("wrong: challenge %d bytes, then %d" % (len(hello), len(read_all(s))))
elif mode == "replay":
    key = control_key(sys.argv[4])
    s = connect(host, port)
    hello = recv_exact(s, 40)
    nc = os.urandom(32)
    proof = nc + tag(key, b"c", hello[8:], nc)
    s.sendall(proof)
    server = recv_exact(s, 32)
    honest = server == tag(key, b"s", hello[8:], nc)
    s.close()  # no hello: dropped as silent after the proof
    s = connect(host, port)
    hello2 = recv_exact(s, 40)
    s.sendall(proof)  # the old proof, for a new nonce
    print("replay: honest handshake %s; replayed proof: %d bytes back" %
          ("accepted" if honest else "REFUSED", len(read_all(s))))
elif mode == "store_garbage":
    s = connect(host, port)
    hello = recv_exact(s, 38)
    s.sendall(os.urandom(4096))
    print("store_garbage: hello %d bytes, then %d" % (len(hello), len(read_all(s))))
elif mode == "store_wrong":
    s = connect(host, port)
    hello = recv_exact(s, 38)
    wrong = hashlib.blake2b(b"\0" * 32, digest_size=32).digest()
    s.sendall(hmac.new(wrong, hello[6:], hashlib.sha512).digest()[:32])
    req = struct.pack("<BIII", 1, 1, 1, 0) + b"kv"
    s.sendall(req)
    print("store_wrong: hello %d bytes, then %d" % (len(hello), len(read_all(s))))
elif mode == "gloo":
    held = []
    for p in sys.argv[3:]:
        try:
            s = socket.create_connection((host, int(p)), timeout=2)
        except OSError as e:
            print("gloo %s: cannot connect (%s)" % (p, e))
            continue
        s.sendall(os.urandom(64))
        try:
            s.settimeout(1)
            back = s.recv(4096)
            print("gloo %s: connected, sent 64 random bytes, got %d bytes back%s" %
                  (p, len(back), " and was closed" if not back else ""))
        except socket.timeout:
            print("gloo %s: connected, sent 64 random bytes, no answer, connection kept open" % p)
        try:
            held.append(socket.create_connection((host, int(p)), timeout=2))
        except OSError as e:
            print("gloo %s: a second connection was refused (%s)" % (p, e.strerror))
    time.sleep(2)
    print("gloo: held %d silent connections for 2 s" % len(held))
else:
    sys.exit("unknown mode " + mode)
