"""gunicorn's threaded worker, stopping without resetting a connection it has not accepted.

On SIGTERM the stock gthread worker stops accepting at once but closes its listening socket only
after its last request in flight is answered. Connections that reach the container meanwhile
(the proxy still resolves `web` to it until it stops) wait in the kernel's accept queue and are
reset when the socket finally closes: the proxy sees the request fail after it was sent and,
for a POST, cannot retry it elsewhere (a 502 during scripts/deploy). This worker accepts what is
already queued and closes its listening socket as soon as the graceful stop begins, so a later
connection is refused, which the proxy retries on another replica, and every accepted one is
answered within the graceful timeout.
"""

from gunicorn.workers.gthread import ThreadWorker


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
