"""Publishing a job from web: its PENDING state, its record copy and its message in one Redis
round trip.

Celery's `apply_async` on the Redis broker costs, per job, a PENDING SET (ours), an LPUSH of the
message and a PUBLISH of the task-sent event (Flower's "received" view), each its own round
trip, kombu building a redis-py client for each, and every thread of the process queueing on
one lock held while the event goes out (Celery's default event dispatcher). Here, on the Redis
broker:

- each web thread keeps one kombu connection, producer and event dispatcher (made on first use,
  reused for the life of the process: no pool, no shared lock);
- Celery builds the message and the event exactly as it would (same serializer, headers,
  routing, signals), but kombu's writes go to a recorder instead of the socket;
- one MULTI/EXEC then writes the PENDING state and the record copy (result backend's database),
  and replays kombu's writes (broker database): PENDING lands before the message exists, so a
  worker's STARTED always follows it, and either all of it happens or none of it does.

Broker and result backend are two databases of one Redis server (config/settings/core.py builds both URLs
from REDIS_HOST): the transaction SELECTs the backend's database, writes, and SELECTs the
broker's database again before the broker's writes (the connection stays on its own database).
With BROKER=rabbitmq the message goes through kombu as usual (publisher confirms), after the
state is written; only the event dispatcher is per thread there.
"""

import contextlib
import logging
import threading
from contextlib import contextmanager

import redis
from celery import current_app
from django.conf import settings
from kombu import Connection
from kombu.transport import redis as kombu_redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from jobs import job_store
from jobs.base import KINDS

logger = logging.getLogger(__name__)

# kombu's writes while a job is published: LPUSH (message), PUBLISH (event), SADD (the queue's
# binding, on a thread's first publish). Anything else means kombu changed: refuse loudly.
RECORDED = frozenset({"lpush", "publish", "sadd"})


class UnexpectedBrokerCall(RuntimeError):
    pass


class _Recorder:
    """Stands in for kombu's redis client while a message is built: keeps the writes."""

    def __init__(self):
        self.calls: list[tuple[str, tuple, dict]] = []

    def __getattr__(self, name):
        if name not in RECORDED:
            raise UnexpectedBrokerCall(f"kombu called {name!r} while publishing")

        def record(*args, **kwargs):
            self.calls.append((name, args, kwargs))

        return record


_local = threading.local()


class RecordingChannel(kombu_redis.Channel):
    @contextmanager
    def conn_or_acquire(self, client=None):
        recorder = getattr(_local, "recorder", None)
        if recorder is not None and client is None:
            yield recorder
            return
        with super().conn_or_acquire(client) as real:
            yield real


class RecordingTransport(kombu_redis.Transport):
    Channel = RecordingChannel


class _ThreadPublisher:
    def __init__(self):
        # Celery's own default dispatcher (enabled=False: it publishes through the producer it is
        # given), but one per thread, so no thread waits on another's event.
        self.events = current_app.events.Dispatcher(enabled=False)
        self._producer = None

    @property
    def producer(self):
        """The thread's kombu producer on the Redis broker, its writes recordable."""
        if self._producer is None:
            app = current_app
            connection = Connection(
                settings.CELERY_BROKER_URL,
                transport=RecordingTransport,
                transport_options=app.conf.broker_transport_options,
                connect_timeout=settings.REDIS_SOCKET_TIMEOUT,
            )
            _ = connection.default_channel  # connect now (kombu pings), not while recording
            self._producer = app.amqp.Producer(connection, auto_declare=False)
        return self._producer


def _thread_publisher() -> _ThreadPublisher:
    publisher = getattr(_local, "publisher", None)
    if publisher is None:
        publisher = _local.publisher = _ThreadPublisher()
    return publisher


_broker_clients: dict[str, redis.Redis] = {}
_clients_lock = threading.Lock()


def _broker_client() -> redis.Redis:
    """One redis-py client (and connection pool) per process for the broker's database."""
    url = settings.CELERY_BROKER_URL
    client = _broker_clients.get(url)
    if client is None:
        with _clients_lock:
            # Gives up within about a second, like task_publish_retry_policy: the client gets
            # a 503 rather than a hung request while Redis is away.
            client = _broker_clients.get(url) or redis.Redis.from_url(
                url,
                socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
                socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT,
                socket_keepalive=True,
                health_check_interval=25,
                protocol=2,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.1), 2),
            )
            _broker_clients[url] = client
    return client


def _db_of(client: redis.Redis) -> int:
    return int(client.connection_pool.connection_kwargs.get("db", 0))


_recording_broken = False


def single_round_trip() -> bool:
    """The state and the message can share one transaction: Redis broker, same server."""
    if settings.BROKER != "redis" or _recording_broken:
        return False
    backend = current_app.backend.client.connection_pool.connection_kwargs
    broker = _broker_client().connection_pool.connection_kwargs
    return (backend.get("host"), backend.get("port")) == (broker.get("host"), broker.get("port"))


def publish(task, *, task_id: str, kwargs: dict, state_writes: list[tuple[bytes | str, bytes, int]]) -> None:
    """Write state_writes (key, value, expiry in s; result backend's database) and publish the
    task's message, in one round trip where the broker allows."""
    publisher = _thread_publisher()
    if not single_round_trip():
        backend = current_app.backend.client
        with backend.pipeline(transaction=True) as pipe:
            for key, value, ex in state_writes:
                pipe.set(key, value, ex=ex)
            pipe.execute()
        task.apply_async(kwargs=kwargs, task_id=task_id, event_dispatcher=publisher.events)
        return

    producer = publisher.producer
    recorder = _Recorder()
    _local.recorder = recorder
    try:
        # declare=[]: the queue is the workers' to declare; the message goes to the anonymous
        # exchange with the queue's name as routing key (an LPUSH on the Redis broker).
        task.apply_async(
            kwargs=kwargs, task_id=task_id, producer=producer, event_dispatcher=publisher.events, declare=[]
        )
        if not any(name == "lpush" for name, _, _ in recorder.calls):
            raise UnexpectedBrokerCall("kombu wrote no message while publishing")
    except UnexpectedBrokerCall:
        # A kombu release that publishes differently: say so once and take the plain path.
        global _recording_broken
        _recording_broken = True
        logger.exception(
            "Publishing in one round trip is not possible with this kombu; using apply_async as is"
        )
        return publish(task, task_id=task_id, kwargs=kwargs, state_writes=state_writes)
    finally:
        _local.recorder = None
    client = _broker_client()
    with client.pipeline(transaction=True) as pipe:
        pipe.execute_command("SELECT", _db_of(current_app.backend.client))
        for key, value, ex in state_writes:
            pipe.set(key, value, ex=ex)
        pipe.execute_command("SELECT", _db_of(client))
        for name, args, kw in recorder.calls:
            getattr(pipe, name)(*args, **kw)
        pipe.execute()


def pending_result() -> dict:
    """The result part of a PENDING meta: no worker, not started."""
    return {"hostname": None, "started_at": None}


def publish_job(job) -> None:
    """Publish a job record's run: its PENDING state and record copy, then its message (web's
    submissions, and jobs.lost_messages for a message Redis lost).

    PENDING is written before the message exists, so the worker's states always overwrite it
    and a submitted id is never mistaken for an unknown one."""
    try:
        publish(
            KINDS[job.kind].task,
            task_id=job.id,
            kwargs=job.params,
            state_writes=job_store.pending_writes(job, pending_result()),
        )
    except BaseException:
        with contextlib.suppress(Exception):
            job_store.forget_submission(job.id)
        raise
