"""The fake Hub itself: a client that hangs up mid-file is no error (no traceback in the test log)."""

from __future__ import annotations

import os
import socket
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_hub import FakeHub


def test_a_client_hanging_up_mid_file_is_quiet():
    data = os.urandom(4 * 2**20)
    with FakeHub({"someone/model": {"big.bin": data}}) as hub:
        hub.slow.add("big.bin")
        hub.chunk_delay_s = 0.002
        errors: list = []
        hub.server.handle_error = lambda request, address: errors.append(
            sys.exc_info()[1]
        )  # what would print a traceback
        host, port = hub.server.server_address[:2]
        for _ in range(2):
            s = socket.create_connection((host, port))
            s.sendall(b"GET /someone/model/resolve/main/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(65536)  # the file has started
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()  # a reset, as when a download is stopped
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(hub.requests) < 2:
            time.sleep(0.01)
    # leaving the block joined the handler threads: they ended, and raised nothing
    assert len(hub.requests) == 2
    assert errors == []
