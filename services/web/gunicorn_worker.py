"""A gunicorn that stops without resetting a connection it has not accepted.

On SIGTERM the stock gthread worker stops accepting at once but closes its listening socket only
after its last request in flight is answered. Connections that reach the container meanwhile
(the proxy still resolves `web` to it until it stops) wait in the kernel's accept queue and are
reset when the socket finally closes: the proxy sees the request fail after it was sent and,
for a POST, cannot retry it elsewhere (a 502 during scripts/deploy). Two parts close that gap:

- the master, on SIGTERM, first makes the listening socket (one socket, shared by the master and
  every worker) drop new connection attempts (`refuse_new_connections`), so its queue stops
  growing the moment the stop begins, in every process at once;
- each worker (DrainingThreadWorker) then accepts what is already queued and closes its copy of the
  socket, and answers every accepted connection within the graceful timeout.

A connection attempt meanwhile gets no answer; the client sends its SYN again a second later, finds
the socket closed and is refused, and the proxy's dial goes on to another replica. Without the first
part, a connection could still slip into the queue between one process's last accept() and the
close of the last copy of the socket (1 reset in 10 stops of a gunicorn hammered by 16 clients).
"""

import ctypes
import socket
import struct

from gunicorn.workers.gthread import ThreadWorker

SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)  # Linux's value; the socket module may not name it

# A classic BPF socket filter, run on each TCP segment that reaches the listening socket (offsets
# from the TCP header): drop a segment whose flags are SYN without ACK, i.e. a new connection
# attempt; keep everything else, so a handshake already under way completes into the queue (and is
# drained) and connections inheriting the filter are unaffected.
REFUSE_NEW_CONNECTIONS = (
    # (code, jump if true, jump if false, k)
    (0x30, 0, 0, 13),  # ldb [13]         the flags byte
    (0x54, 0, 0, 0x12),  # and #0x12        SYN | ACK
    (0x15, 0, 1, 0x02),  # jeq #0x02        SYN alone? drop : keep
    (0x06, 0, 0, 0),  # ret #0           drop
    (0x06, 0, 0, 0xFFFFFFFF),  # ret #-1          keep the whole segment
)


def refuse_new_connections(listeners) -> None:
    """From now on the sockets queue no new connection (for every process holding them)."""
    program = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *op) for op in REFUSE_NEW_CONNECTIONS))
    fprog = struct.pack("HP", len(REFUSE_NEW_CONNECTIONS), ctypes.addressof(program))  # the kernel copies it
    for listener in listeners:
        listener.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def refuse_new_connections_on_sigterm(arbiter) -> None:
    """Make the master's graceful stop (SIGTERM, what `docker stop` sends) begin with
    refuse_new_connections. Not on the graceful stop of single workers (a HUP reload, max_requests,
    TTOU): the socket serves on."""
    graceful_stop = arbiter.handle_term

    def handle_term():
        try:
            refuse_new_connections(arbiter.LISTENERS)
        except OSError as exc:  # not Linux: the workers' draining still narrows the gap
            arbiter.log.warning("Could not stop new connections before stopping: %s", exc)
        graceful_stop()

    arbiter.handle_term = handle_term  # the master's loop looks its handlers up on the instance


class DrainingThreadWorker(ThreadWorker):
    def set_accept_enabled(self, enabled):
        super().set_accept_enabled(enabled)
        # Disabled while alive is only "too many connections for now": keep listening then.
        if not enabled and not self.alive:
            self.close_listeners()

    def close_listeners(self):
        for listener in self.sockets:
            while True:  # accept() handles an empty queue (EAGAIN) and leaves nr_conns alone
                accepted = self.nr_conns
                self.accept(listener)
                if self.nr_conns == accepted:
                    break
            # The master and the other workers close their copies as they stop too; the socket
            # (and its queue) ends with the last one.
            listener.close()
