"""free_port_pair.py: prints a TCP port on 127.0.0.1 that is free and whose next port is
free too (a multi-node session's store and control port), for the e2e tests."""
import socket

for _ in range(100):
    a = socket.socket()
    a.bind(("127.0.0.1", 0))
    port = a.getsockname()[1]
    b = socket.socket()
    try:
        b.bind(("127.0.0.1", port + 1))
        break
    except OSError:
        pass
    finally:
        a.close()
        b.close()
print(port)
