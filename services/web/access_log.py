"""gunicorn's access line, built from only the fields it prints, and written in batches.

gunicorn's stock `Logger.atoms()` builds a dict of every field it knows for each request: the
date (strftime), every request and response header and every WSGI environ variable, about 70
entries, which `SafeAtoms` then copies and escapes, all for the eight fields FORMAT prints. That
was about 0.07 ms of web's CPU per request, some 8 % of a bare request's (docs/benchmarks.md).
AccessLogger computes those eight; the line is the same as gunicorn's own
(tests/unit/test_access_log.py), and the `gunicorn.access` logger still writes it.

Its handler writes the lines in batches (config.logs.BatchedStreamHandler): a write per line
cost web about 0.15 ms of CPU per request (docs/benchmarks.md).
"""

from gunicorn import glogging

from config.logs import batch_stream_handlers

# No query strings and no headers but the proxy's X-Forwarded-For (the real client address):
# nothing secret can land in the access log. Change it together with AccessLogger._format_fields.
FORMAT = '%(h)s %({x-forwarded-for}i)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms'


def _escaped(value):
    # What gunicorn's SafeAtoms does to a string: a quote inside a field cannot end the field.
    return value.replace('"', '\\"') if isinstance(value, str) else value


class AccessLogger(glogging.Logger):
    def setup(self, cfg):
        super().setup(cfg)
        # gunicorn's own handler for "-", or LOG_FORMAT=json's console handler.
        batch_stream_handlers(self.access_log)

    def access(self, resp, req, environ, request_time):
        # The stock access() wraps atoms() in SafeAtoms (a copy of every entry, each escaped);
        # the eight of FORMAT are escaped already, and none is ever missing. Another format
        # (gunicorn's --access-logformat) gets the stock fields.
        if self.cfg.access_log_format != FORMAT:
            return super().access(resp, req, environ, request_time)
        if not self.access_log_enabled:
            return
        try:
            self.access_log.info(FORMAT, self._format_fields(resp, req, environ, request_time))
        except Exception:
            self.exception("access log line failed")

    @staticmethod
    def _format_fields(resp, req, environ, request_time) -> dict:
        status = resp.status
        if isinstance(status, str):
            status = status.split(None, 1)[0]
        forwarded_for = "-"
        for name, value in getattr(req, "headers", ()):
            if name.lower() == "x-forwarded-for":
                forwarded_for = value  # the last one, as gunicorn's dict of headers keeps it
        return {
            "h": environ.get("REMOTE_ADDR", "-"),
            "{x-forwarded-for}i": _escaped(forwarded_for),
            "m": _escaped(environ.get("REQUEST_METHOD")),
            "U": _escaped(environ.get("PATH_INFO")),
            "H": _escaped(environ.get("SERVER_PROTOCOL")),
            "s": status,
            "B": getattr(resp, "sent", None),
            "M": request_time.seconds * 1000 + int(request_time.microseconds / 1000),
        }
