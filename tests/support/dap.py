"""A small Debug Adapter Protocol client: what an editor does when it attaches to debugpy.

DAP messages are JSON objects framed by a `Content-Length: N\\r\\n\\r\\n` header, over TCP here
(debugpy's `--listen` port). The client sends requests with increasing `seq` numbers; the
adapter answers each with a response carrying `request_seq`, and sends events (`initialized`,
`stopped`, `output`, ...) at any time. A reader thread collects everything, so a test can
send a request now and wait for its response (or for an event) later - which debugpy's attach
flow needs: the `attach` response only comes after `configurationDone`.

Spec: https://microsoft.github.io/debug-adapter-protocol/specification
"""

import json
import socket
import threading
import time
from typing import Any


class DapError(AssertionError):
    """A DAP failure: an unsuccessful response, a closed connection or a timeout."""


class DapClient:
    def __init__(self, host: str, port: int, connect_timeout: float = 10):
        self.address = (host, port)
        self.sock = socket.create_connection(self.address, timeout=connect_timeout)
        self.sock.settimeout(None)
        self._seq = 0
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()
        self._responses: dict[int, dict] = {}
        self._events: list[dict] = []
        self.messages: list[dict] = []  # everything received, for failure reports
        self.closed = False
        self._reader = threading.Thread(target=self._read_loop, name=f"dap-{port}", daemon=True)
        self._reader.start()

    # --- context manager -----------------------------------------------------------------------
    def __enter__(self) -> "DapClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._reader.join(timeout=5)

    # --- sending -------------------------------------------------------------------------------
    def _write(self, message: dict) -> None:
        body = json.dumps(message).encode("utf-8")
        with self._send_lock:
            self.sock.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def send_request(self, command: str, arguments: dict | None = None) -> int:
        """Send a request without waiting; returns its seq (for wait_response)."""
        with self._send_lock:
            self._seq += 1
            seq = self._seq
        message: dict[str, Any] = {"seq": seq, "type": "request", "command": command}
        if arguments is not None:
            message["arguments"] = arguments
        self._write(message)
        return seq

    def request(self, command: str, arguments: dict | None = None, timeout: float = 30) -> dict:
        """Send a request and return its (successful) response."""
        return self.wait_response(self.send_request(command, arguments), timeout=timeout)

    # --- receiving -----------------------------------------------------------------------------
    def wait_response(self, seq: int, timeout: float = 30) -> dict:
        with self._cond:
            if not self._cond.wait_for(lambda: seq in self._responses or self.closed, timeout):
                raise DapError(f"no response to request {seq} within {timeout}s{self._tail()}")
            if seq not in self._responses:
                raise DapError(f"connection closed before the response to request {seq}{self._tail()}")
            response = self._responses.pop(seq)
        if not response.get("success"):
            raise DapError(
                f"{response.get('command')} failed: {response.get('message')!r} {response.get('body')!r}"
            )
        return response

    def wait_event(self, event: str, timeout: float = 30, where=None) -> dict:
        """The first event of that name (and matching `where(body)`) not returned before.

        Events are kept from the moment they arrive, so one sent before this call counts.
        """

        def find():
            for index, message in enumerate(self._events):
                if message.get("event") == event and (where is None or where(message.get("body") or {})):
                    return index
            return None

        with self._cond:
            found = None

            def ready():
                nonlocal found
                found = find()
                return found is not None or self.closed

            self._cond.wait_for(ready, timeout)
            if found is None:
                state = "connection closed" if self.closed else f"not within {timeout}s"
                raise DapError(f"no {event!r} event ({state}){self._tail()}")
            message = self._events.pop(found)
            return message

    def events(self, event: str) -> list[dict]:
        with self._cond:
            return [m for m in self._events if m.get("event") == event]

    def _tail(self) -> str:
        recent = [
            {k: m.get(k) for k in ("type", "command", "event", "success", "message")}
            for m in self.messages[-8:]
        ]
        return f"; last messages received: {recent}"

    def _read_loop(self) -> None:
        stream = self.sock.makefile("rb")
        try:
            while True:
                headers: dict[str, str] = {}
                while True:
                    line = stream.readline()
                    if not line:
                        return
                    line = line.strip()
                    if not line:
                        break
                    name, _, value = line.decode("ascii").partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers["content-length"])
                body = stream.read(length)
                if len(body) < length:
                    return
                message = json.loads(body.decode("utf-8"))
                self._dispatch(message)
        except (OSError, ValueError):
            return
        finally:
            with self._cond:
                self.closed = True
                self._cond.notify_all()

    def _dispatch(self, message: dict) -> None:
        kind = message.get("type")
        if kind == "request":
            # A reverse request (runInTerminal, startDebugging): this client supports none.
            self._write(
                {
                    "seq": 0,
                    "type": "response",
                    "request_seq": message.get("seq"),
                    "command": message.get("command"),
                    "success": False,
                    "message": "not supported by this client",
                }
            )
        with self._cond:
            self.messages.append(message)
            if kind == "response":
                self._responses[message["request_seq"]] = message
            elif kind == "event":
                self._events.append(message)
            self._cond.notify_all()

    # --- the usual sequences -------------------------------------------------------------------
    def initialize(self, client_id: str = "djcs-tests", timeout: float = 30) -> dict:
        """The first request of every session; returns the adapter's capabilities."""
        response = self.request(
            "initialize",
            {
                "clientID": client_id,
                "clientName": "djcs tests",
                "adapterID": "debugpy",
                "pathFormat": "path",
                "linesStartAt1": True,
                "columnsStartAt1": True,
                "supportsVariableType": True,
                "supportsRunInTerminalRequest": False,
                "locale": "en",
            },
            timeout=timeout,
        )
        return response.get("body") or {}

    def attach(
        self, breakpoints: dict[str, list[int]], timeout: float = 30, **options
    ) -> dict[str, list[dict]]:
        """attach, then (after `initialized`) setBreakpoints per local file and configurationDone.

        options are the attach arguments, as in a launch.json configuration (pathMappings,
        justMyCode, ...). Returns local path -> the breakpoints the adapter reported. debugpy
        answers `attach` only after configurationDone, so its response is awaited last.
        """
        attach_seq = self.send_request(
            "attach", {"name": "djcs tests", "type": "debugpy", "request": "attach", **options}
        )
        self.wait_event("initialized", timeout=timeout)
        reported = {}
        for path, lines in breakpoints.items():
            body = (
                self.request(
                    "setBreakpoints",
                    {
                        "source": {"path": path},
                        "breakpoints": [{"line": line} for line in lines],
                        "lines": lines,
                        "sourceModified": False,
                    },
                    timeout=timeout,
                ).get("body")
                or {}
            )
            reported[path] = body.get("breakpoints", [])
        self.request("configurationDone", timeout=timeout)
        self.wait_response(attach_seq, timeout=timeout)
        return reported

    def wait_stopped(self, reason: str = "breakpoint", timeout: float = 60) -> dict:
        return self.wait_event("stopped", timeout=timeout, where=lambda body: body.get("reason") == reason)

    def top_frame(self, thread_id: int, timeout: float = 30) -> dict:
        body = (
            self.request(
                "stackTrace", {"threadId": thread_id, "startFrame": 0, "levels": 1}, timeout=timeout
            ).get("body")
            or {}
        )
        frames = body.get("stackFrames") or []
        if not frames:
            raise DapError(f"thread {thread_id} has no stack frames: {body!r}")
        return frames[0]

    def disconnect(self, terminate_debuggee: bool = False, timeout: float = 30) -> None:
        """End the session, leaving the debuggee running (unless told otherwise)."""
        self.request(
            "disconnect", {"restart": False, "terminateDebuggee": terminate_debuggee}, timeout=timeout
        )


def connected(host: str, port: int, timeout: float = 90) -> "DapClient":
    """A client whose session the adapter has initialized. A debugpy adapter that has just ended
    the session before (a test's disconnect) can take a new connection and not answer it: seen
    once in CI, 30 s of silence after the port test's session. Such a connection is dropped and
    another made, as a developer attaches again."""
    deadline = time.monotonic() + timeout
    while True:
        client = DapClient(host, port)
        try:
            client.initialize(timeout=10)
            return client
        except DapError:
            client.close()
            if time.monotonic() > deadline:
                raise
