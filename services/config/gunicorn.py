"""gunicorn configuration, read from the environment (`gunicorn -c python:config.gunicorn`)."""

import logging
import os

from web import access_log

bind = f"0.0.0.0:{os.environ.get('WEB_CONTAINER_PORT', '8000')}"
# Threads let one process wait on Redis/PostgreSQL for several requests at once.
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# gthread, but draining its queue and closing its listening socket as soon as a graceful stop begins
# (web/gunicorn_worker.py: no request is reset while a web container stops during a deploy).
worker_class = "web.gunicorn_worker.DrainingThreadWorker" if threads > 1 else "sync"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
# Recycle workers now and then so a slow leak never grows without bound. Not too often: a
# fresh worker reconnects to PostgreSQL and Redis and warms up, and at full load (~800
# requests/s here) 2,000 requests would mean a restart every few seconds.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "20000"))
max_requests_jitter = max_requests // 10
# Heartbeat files in RAM: the root filesystem is read-only and /tmp may be slow.
worker_tmp_dir = "/dev/shm"
# gunicornc's control socket (worker status, graceful reload) on the /tmp tmpfs: its default,
# under the home directory, is on the read-only root filesystem and failed at every start.
control_socket = "/tmp/gunicorn.ctl"
# Load the app once in the master: settings are checked once, workers fork ready.
preload_app = True
# Whose X-Forwarded-Proto gunicorn itself believes. Django reads that header on its own
# (SECURE_PROXY_SSL_HEADER in production), so this matters little; requests from a proxy on
# the host arrive from the Docker network's gateway address, not from 127.0.0.1.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
accesslog = "-" if os.environ.get("GUNICORN_ACCESS_LOG", "true").lower() == "true" else None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
# No query strings and no headers but the proxy's X-Forwarded-For (the real client address):
# nothing secret can land in the access log. The line is built from just those fields.
access_log_format = access_log.FORMAT
logger_class = access_log.AccessLogger
# LOG_FORMAT=json: gunicorn's own lines (access log included) as JSON objects too, like the app's.
if os.environ.get("LOG_FORMAT", "text") == "json":
    from config.logs import logging_config

    logconfig_dict = logging_config(
        "json",
        loglevel.upper(),
        loggers={
            "gunicorn.error": {"handlers": ["console"], "level": loglevel.upper(), "propagate": False},
            "gunicorn.access": {
                "handlers": ["console"],
                "level": "INFO" if accesslog else "WARNING",
                "propagate": False,
            },
        },
    )


def when_ready(server):
    # The app's lines (LOGGING's console handler on the root logger) go out in batches, as the
    # access lines do (config/logs.py). Set here, once the app is loaded, before workers fork.
    from config.logs import batch_stream_handlers

    batch_stream_handlers(logging.getLogger())
    # On SIGTERM the socket first stops taking new connections, in every process at once.
    from web.gunicorn_worker import refuse_new_connections_on_sigterm

    refuse_new_connections_on_sigterm(server)
    # The metrics of every worker process, served by the master (config/metrics.py).
    from config import metrics
    from jobs.metrics import WEB_COUNTERS

    metrics.serve_job_counts(WEB_COUNTERS)


def child_exit(server, worker):
    from config import metrics

    metrics.process_exited(worker.pid)
