"""Settings of the jobs and of Celery: both brokers, the result backend, time limits,
redelivery, the archive and housekeeping (read by config.celery with namespace="CELERY")."""

from urllib.parse import quote

from django.core.exceptions import ImproperlyConfigured

from config.settings.core import (
    BROKER,
    PRODUCTION,
    RABBITMQ_PASSWORD,
    REDIS_SOCKET_TIMEOUT,
    TIME_ZONE,
    redis_url,
)
from config.settings.environment import env

# --- Jobs ---------------------------------------------------------------------------------------
# Per-kind Celery rate limits, e.g. "model_inference=10/m,sum_number=100/s" (per worker node).
JOB_RATE_LIMITS = env.dict("JOB_RATE_LIMITS", default={})
# The example kinds of jobs/tasks.py clients may submit ("*": all). Off in production: allocate
# exhausts a worker's memory on purpose, wait_io and model_inference hold a worker for minutes.
JOB_DEMO_KINDS = env.list("JOB_DEMO_KINDS", default=[] if PRODUCTION else ["*"])

# --- Celery (read by config.celery with namespace="CELERY") --------------------------------------
CELERY_BROKER_URL = redis_url(0)
RABBITMQ_HOST = env.str("RABBITMQ_HOST", default="rabbitmq")
RABBITMQ_PORT = env.int("RABBITMQ_PORT", default=5672)
RABBITMQ_USER = env.str("RABBITMQ_USER", default="app")
RABBITMQ_VHOST = env.str("RABBITMQ_VHOST", default="jobs")
if BROKER == "rabbitmq":
    CELERY_BROKER_URL = (
        f"amqp://{quote(RABBITMQ_USER, safe='')}:{quote(RABBITMQ_PASSWORD, safe='')}"
        f"@{RABBITMQ_HOST}:{RABBITMQ_PORT}/{quote(RABBITMQ_VHOST, safe='')}"
    )
# Celery's Redis backend, minus two pub/sub round trips per task sent (jobs/result_backend.py).
CELERY_RESULT_BACKEND = "jobs.result_backend:JobResultBackend+" + redis_url(1)
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = TIME_ZONE
CELERY_ENABLE_UTC = True
# A finished job's state and result are kept this long; then the API answers "expired" (410).
# Redis holds them only for JOB_HOT_SECONDS after the job finished, PostgreSQL for the rest
# (jobs/archive.py); queued and running jobs keep their Redis state this long at most.
CELERY_RESULT_EXPIRES = env.int("JOB_RESULT_EXPIRES", default=24 * 3600)
# How long a finished job stays in Redis once its record in PostgreSQL holds it: polling
# clients read it there in one round trip; later reads cost one indexed query. Redis's memory
# grows with the jobs finished in this window, not with the jobs of the day (docs/capacity.md).
JOB_HOT_SECONDS = env.int("JOB_HOT_SECONDS", default=60)
if not 0 <= JOB_HOT_SECONDS <= CELERY_RESULT_EXPIRES:
    raise ImproperlyConfigured("JOB_HOT_SECONDS must be between 0 and JOB_RESULT_EXPIRES.")
# Submissions answer 503 (job store full) once Redis's used memory reaches this share of its
# maxmemory: the rest is room for the jobs already accepted to run and finish, whose writes
# Redis must never refuse (a refused write there can lose a message; docs/capacity.md).
JOB_STORE_ADMIT_PERCENT = env.int("JOB_STORE_ADMIT_PERCENT", default=80)
if not 10 <= JOB_STORE_ADMIT_PERCENT <= 95:
    raise ImproperlyConfigured("JOB_STORE_ADMIT_PERCENT must be between 10 and 95.")
# Stores the worker's hostname, task name and retries with each state (not the arguments:
# jobs/result_backend.py leaves them out, the job's record has them).
CELERY_RESULT_EXTENDED = True
CELERY_TASK_DEFAULT_QUEUE = "jobs"

# At-least-once delivery on the Redis broker; each line's reason is in docs/reliability.md.
# A message is acknowledged only after its task finished, so a worker that dies mid-job leaves
# it in Redis to be delivered again.
CELERY_TASK_ACKS_LATE = True
# ...and a job whose pool process was killed (OOM, SIGKILL) goes back to the queue, not to FAILURE.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# One message per pool process: long jobs do not sit reserved behind a busy process
# while another worker idles. Raising it helps only floods of tiny jobs (docs/benchmarks.md).
CELERY_WORKER_PREFETCH_MULTIPLIER = env.int("CELERY_WORKER_PREFETCH_MULTIPLIER", default=1)
# Unacknowledged messages come back after this many seconds; it must exceed the longest
# job (CELERY_TASK_TIME_LIMIT), or a job still running is delivered a second time.
CELERY_VISIBILITY_TIMEOUT = env.int("CELERY_VISIBILITY_TIMEOUT", default=2 * 3600)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=3600)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=3300)
if CELERY_TASK_TIME_LIMIT >= CELERY_VISIBILITY_TIMEOUT:
    raise ImproperlyConfigured(
        "CELERY_TASK_TIME_LIMIT must be shorter than CELERY_VISIBILITY_TIMEOUT, "
        "or long jobs are delivered twice while still running."
    )
_redis_transport = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
    "socket_timeout": REDIS_SOCKET_TIMEOUT,
    "socket_connect_timeout": REDIS_SOCKET_TIMEOUT,
    "socket_keepalive": True,
    "retry_on_timeout": True,
    "health_check_interval": 25,
}
CELERY_BROKER_TRANSPORT_OPTIONS = _redis_transport
# kombu's Redis transport, whose writes about held messages wait out a full Redis.
CELERY_BROKER_TRANSPORT = "jobs.redis_transport:Transport"
if BROKER == "rabbitmq":
    # Publisher confirms: a publish returns (and the API answers 202) only once RabbitMQ has
    # the message. Quorum queues: replicated, durable, and they count deliveries; Celery then
    # uses per-consumer prefetch and RabbitMQ's native delayed delivery for retry countdowns.
    # A dead worker's unacknowledged messages return to the queue when its connection closes
    # (heartbeats notice a vanished one), so jobs/dead_workers.py is for Redis only.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
    CELERY_BROKER_TRANSPORT = None  # the URL's (amqp)
    CELERY_TASK_DEFAULT_QUEUE_TYPE = "quorum"
    # Native delayed delivery (retry countdowns) routes through topic exchanges only.
    CELERY_TASK_DEFAULT_EXCHANGE_TYPE = "topic"
    CELERY_WORKER_DETECT_QUORUM_QUEUES = True
    CELERY_BROKER_HEARTBEAT = 30
    # Celery declares its control (pidbox) and event queues neither durable nor exclusive, which
    # RabbitMQ deprecates (transient_nonexcl_queues) and the overlay denies: each is one or the
    # other. A worker's control queue is named after the worker, so an exclusive one would stop a
    # worker restarted under its name (a SIGKILLed container started again) with RESOURCE_LOCKED
    # for as long as RabbitMQ holds the old connection: durable (deleted 10 s after its last
    # consumer left). Event queues (Flower's) have a new random name per connection: exclusive,
    # gone with it.
    CELERY_CONTROL_QUEUE_DURABLE = True
    CELERY_EVENT_QUEUE_EXCLUSIVE = True
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = _redis_transport
# The result backend's own client reads these (not the transport options above).
CELERY_REDIS_SOCKET_TIMEOUT = REDIS_SOCKET_TIMEOUT
CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = REDIS_SOCKET_TIMEOUT
CELERY_REDIS_RETRY_ON_TIMEOUT = True
CELERY_REDIS_SOCKET_KEEPALIVE = True
CELERY_REDIS_BACKEND_HEALTH_CHECK_INTERVAL = 25
# Workers and beat keep trying to reach a restarted Redis instead of exiting (no crash loop).
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# A job's state and result are written even if Redis is away at that moment: the write is
# retried with backoff (at most 10 s apart) for as long as the outage lasts (Celery's default,
# no retry limit). Giving up would mark the job finished in the broker but record nothing.
CELERY_RESULT_BACKEND_ALWAYS_RETRY = True
# A web request publishing while Redis is away gives up within about a second (then 503).
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.3,
    "interval_max": 0.5,
}
CELERY_BROKER_CONNECTION_TIMEOUT = REDIS_SOCKET_TIMEOUT
# Running jobs keep running through a broker reconnect; their ack lands in Redis afterwards.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_WORKER_CONCURRENCY = env.int("CELERY_WORKER_CONCURRENCY", default=2)
# prefork (processes: CPU-bound jobs, a crash takes one job), threads or gevent (I/O-bound
# jobs; gevent for hundreds at once), solo (one job at a time in the worker process itself).
# What each does on cancel and under the OOM killer: .env.example and docs/reliability.md.
# compose/start/start-worker passes it as --pool too: gevent must patch before anything loads.
WORKER_POOLS = ("prefork", "threads", "gevent", "solo")
CELERY_WORKER_POOL = env.str("CELERY_WORKER_POOL", default="prefork")
if CELERY_WORKER_POOL not in WORKER_POOLS:
    raise ImproperlyConfigured(
        f"CELERY_WORKER_POOL must be one of {', '.join(WORKER_POOLS)}, not {CELERY_WORKER_POOL!r}."
    )
# Flower's live view needs task events.
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True
# A worker that dies without a clean stop (SIGKILL, OOM killer, power loss) is noticed this
# many seconds after its last liveness write; live workers then put its jobs back in the queue
# (jobs/dead_workers.py, Redis broker). The visibility timeout above stays the last resort.
JOB_WORKER_LOST_AFTER = env.int("JOB_WORKER_LOST_AFTER", default=30)
if not 10 <= JOB_WORKER_LOST_AFTER < CELERY_VISIBILITY_TIMEOUT:
    raise ImproperlyConfigured(
        "JOB_WORKER_LOST_AFTER must be at least 10 seconds and shorter than CELERY_VISIBILITY_TIMEOUT."
    )
# A job whose worker died under it this many times in a row (one that runs out of memory kills
# its worker on every delivery) ends FAILURE instead of being delivered again.
JOB_MAX_DELIVERIES = env.int("JOB_MAX_DELIVERIES", default=3)
if JOB_MAX_DELIVERIES < 1:
    raise ImproperlyConfigured("JOB_MAX_DELIVERIES must be at least 1.")
# Periodic housekeeping tasks, not job kinds (the kinds are found in jobs/tasks.py).
CELERY_IMPORTS = ["jobs.housekeeping"]
CELERY_BEAT_SCHEDULER = "jobs.beat_scheduler:DatabaseScheduler"
# Save each entry's last run right after it fires, so a restarted beat never fires it twice.
CELERY_BEAT_SYNC_EVERY = 1
# A job whose message a Redis crash lost is published again once its record is this old and
# it is still PENDING (or stateless) with no message in Redis: jobs/lost_messages.py.
JOB_RECOVERY_AFTER = env.int("JOB_RECOVERY_AFTER", default=300)
if JOB_RECOVERY_AFTER < 60:
    raise ImproperlyConfigured("JOB_RECOVERY_AFTER must be at least 60 seconds.")
# Messages a recovery pass reads at most per queue list (in replies of 200): behind a longer
# backlog the jobs it did not find wait for a later pass (docs/capacity.md).
JOB_RECOVERY_SCAN_LIMIT = env.int("JOB_RECOVERY_SCAN_LIMIT", default=20_000)
if JOB_RECOVERY_SCAN_LIMIT < 200:
    raise ImproperlyConfigured("JOB_RECOVERY_SCAN_LIMIT must be at least 200.")
CELERY_BEAT_SCHEDULE = {
    "purge-old-job-records": {"task": "jobs.purge_old_job_records", "schedule": 3600.0},
    "recover-lost-jobs": {"task": "jobs.recover_lost_jobs", "schedule": JOB_RECOVERY_AFTER / 2},
}
JOB_RECORD_RETENTION_DAYS = env.int("JOB_RECORD_RETENTION_DAYS", default=30)
