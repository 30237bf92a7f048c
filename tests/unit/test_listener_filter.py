"""Unit test (no services; loopback sockets of this machine's kernel): the socket filter a
stopping gunicorn master puts on its listening socket (web/gunicorn_worker.py)."""

import socket

import pytest
from web.gunicorn_worker import refuse_new_connections


def test_a_listener_refusing_new_connections_still_hands_out_those_queued():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    address = server.getsockname()
    queued = socket.create_connection(address, timeout=2)

    refuse_new_connections([server])
    # A new attempt gets no answer (its SYN is dropped) rather than joining the queue.
    with pytest.raises(TimeoutError):
        socket.create_connection(address, timeout=0.5)

    # The connection queued before is accepted and works both ways.
    server.settimeout(2)
    conn, _ = server.accept()
    queued.sendall(b"ping")
    assert conn.recv(4) == b"ping"
    conn.sendall(b"pong")
    assert queued.recv(4) == b"pong"
    conn.close()
    queued.close()

    server.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=2)
