"""Jobs held by a dead worker go back to the queue within about a minute (Redis broker).

On the Redis broker a worker takes a message by moving it into the `unacked` hash, and removes
it from there when the job is done (acks_late). A worker that dies without a clean shutdown
(SIGKILL, the kernel's OOM killer, a host losing power) leaves its messages there, and kombu
hands them out again only after the visibility timeout (2 h here, which must outlast the
longest job). This module makes dead workers' messages visible again within
JOB_WORKER_LOST_AFTER seconds (30 by default) plus one sweep, the way a RabbitMQ broker does
when a consumer's connection drops:

- every worker process keeps the delivery tags it holds (received and not yet acknowledged:
  running, prefetched, waiting for an ETA or a rate limit), and a thread of its own writes
  them, within half a second of taking a message and at least every JOB_WORKER_LOST_AFTER/6
  seconds, to a key `jobs:worker:<node>:<boot id>` that expires after JOB_WORKER_LOST_AFTER:
  a worker is alive while its key exists (the sorted set `jobs:workers` lists the recent
  writers, so no sweep scans the keyspace);
- the same thread, in every worker, sweeps the `unacked` hash once an interval: a message held by no live
  worker is put back at the head of its queue, once, under the same task id, and the job's
  state becomes RETRY with a worker-lost marker until a worker starts it again.

A message counts as held by no live worker only when it was delivered at least
JOB_WORKER_LOST_AFTER ago, and every live worker has written its list since the delivery (a
worker that took it would list it) without listing it. A sweeper acts only after its own
writes have succeeded for JOB_WORKER_LOST_AFTER/2 (three intervals) without a break, so after
a Redis outage that made every key expire, the live workers have written again before anyone
judges them dead. The put-back is one Redis transaction
that checks the message is still the same delivery, so two sweepers never put it back twice.
The boot id makes a restarted container (same host name) a new worker: the old one's
messages are not mistaken for the new one's - and, node names being unique among live workers,
the new one puts back at start what its dead predecessor listed last (`jobs:worker-last:<node>`,
kept a day), without waiting for its key to expire.

The thread runs in the worker's main process, whatever the pool; under the gevent pool it is
a greenlet, so a job that computes without yielding for longer than JOB_WORKER_LOST_AFTER
would make its worker look dead (gevent is for I/O-bound jobs). Not used on RabbitMQ, which
redelivers a dead consumer's messages itself.

Over 300 lines: one class, DeliveryWatch, whose parts (the list a worker writes, the sweep, the
reclaim of a predecessor's deliveries, the drop of a finished job's) share the same keys, clocks
and timing rules; apart, each would have to restate the others' invariants.
"""

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass

from celery import current_app, signals
from django.conf import settings

from jobs import job_store
from jobs.job_store import FINISHED_STATES

logger = logging.getLogger(__name__)

WORKER_KEY_PREFIX = "jobs:worker:"
# The workers that wrote a liveness key lately (worker -> when), so a sweep reads the live
# workers' keys without scanning the keyspace (which grows with the jobs in Redis).
WORKERS_INDEX = "jobs:workers"
# Deliveries judged per sweep: a sweep costs the same however many messages workers hold.
SWEEP_BATCH = 1000
# The last list of each node name, kept a day for the next run under that name (a restarted
# container) to put back at once what a dead run held.
LAST_LIST_PREFIX = "jobs:worker-last:"
LAST_LIST_SECONDS = 24 * 3600
UNACKED = "unacked"  # kombu's unacked_key and unacked_index_key (defaults)
UNACKED_INDEX = "unacked_index"
# Clock difference between two worker hosts this recovery tolerates (delivery times are
# written by the receiving worker's clock, list times by each lister's).
CLOCK_MARGIN = 2.0
# Least time between two writes of a worker's list: a worker taking hundreds of messages a
# second writes a few times a second, not once per message.
WRITE_SPACING = 0.5


@dataclass(frozen=True)
class WorkerRecord:
    """What one live worker last wrote: when, and the delivery tags it held then."""

    worker: str
    at: float
    held: frozenset[str]


def orphaned(
    deliveries: dict[str, float], workers: list[WorkerRecord], now: float, lost_after: float
) -> list[str]:
    """The delivery tags (tag -> delivery time) that no live worker holds (pure logic).

    A tag is orphaned when it was delivered at least lost_after ago, no live worker lists it,
    and every live worker wrote its list after the delivery: any of them that had taken it
    would list it. One live worker with an older list leaves the tag undecided this time."""
    held = frozenset().union(*(record.held for record in workers))
    oldest_list = min((record.at for record in workers), default=float("inf"))
    return [
        tag
        for tag, delivered in deliveries.items()
        if tag not in held and now - delivered >= lost_after and oldest_list >= delivered + CLOCK_MARGIN
    ]


def put_back(message: dict) -> dict:
    """The message as kombu restores it: marked redelivered (pure)."""
    message.setdefault("headers", {})["redelivered"] = True
    message.setdefault("properties", {}).setdefault("delivery_info", {})["redelivered"] = True
    return message


class DeliveryWatch:
    """One per worker process: the tags it holds, its liveness key and the sweeps."""

    def __init__(self, node: str, lost_after: float):
        self.node = node
        self.worker = f"{node}:{uuid.uuid4().hex[:12]}"
        self.lost_after = lost_after
        self.interval = lost_after / 6
        self.held: dict[str, object] = {}  # delivery tag -> celery Request (main thread adds)
        self._delivered: dict[str, float | None] = {}  # delivery tag -> its unacked_index score
        self._stop = threading.Event()
        self._received = threading.Event()
        self._thread: threading.Thread | None = None
        self._connection = None
        self._channel = None
        self._up_since: float | None = None  # start of the current run of successful writes
        self.largest_reply = 0  # bytes of the largest reply a sweep read

    # --- in the worker's main thread ---------------------------------------------------------

    def received(self, request) -> None:
        self.held[request.message.delivery_tag] = request
        self._received.set()

    def start(self) -> None:
        try:
            self.reclaim_predecessor()
        except Exception:  # noqa: BLE001 - the sweeps get them a little later
            logger.exception("Could not put back the jobs of this worker's previous run")
        # The first write before the consumer takes any message: a worker is listed from the start.
        self._beat()
        self._thread = threading.Thread(target=self._run, name="delivery-watch", daemon=True)
        self._thread.start()

    def reclaim_predecessor(self) -> list[str]:
        """Put back at once what the previous run of this very worker held when it died.

        The last list written under this node name by another run is, as a rule, a dead
        predecessor's: typically this container before a SIGKILL or an OOM kill, restarted under
        the same host name. Its liveness key may outlive it by up to lost_after, so a key that
        still exists is watched until its next write is due: a live worker rewrites it by then, a
        dead one does not. Rewritten: another live worker has this name (names must be unique,
        docker-compose.swarm.yml makes them so; Celery does not enforce it), and its jobs are left
        to it. Runs before this run's first write, which replaces that list."""
        client = self._client()
        raw = client.get(LAST_LIST_PREFIX + self.node)
        if raw is None:
            return []
        last = json.loads(raw)
        if last["worker"] == self.worker:
            return []
        if self._still_writing(client, WORKER_KEY_PREFIX + last["worker"]):
            logger.warning(
                "Another live worker is named %s: worker names must be unique; its jobs are left to it",
                self.node,
            )
            return []
        restored = []
        # Only deliveries it still held: a message it handed back (a clean stop) may have been
        # taken again since, by a live worker, under the same tag but another delivery time.
        for tag, delivered in last["held"].items():
            if client.zscore(UNACKED_INDEX, tag) == delivered:
                job_id = self._restore(tag, delivered)
                if job_id:
                    restored.append(job_id)
        return restored

    def _still_writing(self, client, key: str) -> bool:
        """Whether the worker owning this liveness key writes it again when it is due to: at
        least once an interval, so a record older than that is a dead worker's."""
        seen = client.get(key)
        if seen is None:
            return False
        due = json.loads(seen)["at"] + self.interval + WRITE_SPACING + CLOCK_MARGIN
        self._stop.wait(max(0.0, due - time.time()))
        return client.get(key) not in (None, seen)

    def stop(self) -> None:
        self._stop.set()
        self._received.set()
        if self._thread:
            self._thread.join(timeout=self.interval + 5)
        try:
            # A clean shutdown hands its messages back itself (kombu restores them on close).
            client = self._client()
            client.delete(WORKER_KEY_PREFIX + self.worker)
            client.zrem(WORKERS_INDEX, self.worker)
        except Exception:  # noqa: BLE001 - best effort: the key expires anyway
            pass
        self._disconnect()

    # --- in the watch thread -----------------------------------------------------------------

    def _run(self) -> None:
        last_sweep = time.monotonic()
        while not self._stop.is_set():
            # Written again soon after the worker takes a message (so its list is nearly
            # current, at most WRITE_SPACING behind) and at least once an interval.
            self._received.wait(self.interval)
            self._received.clear()
            self._beat()
            # Written without a break for three intervals: after a Redis outage every live
            # worker (each retrying once an interval) has written again before this judges.
            now = time.monotonic()
            if (
                now - last_sweep >= self.interval
                and self._up_since is not None
                and now - self._up_since >= self.lost_after / 2
            ):
                last_sweep = now
                try:
                    self.sweep()
                except Exception:  # noqa: BLE001 - a failed sweep is retried at the next one
                    logger.exception("Sweep for orphaned deliveries failed")
            self._stop.wait(WRITE_SPACING)

    def _beat(self) -> None:
        try:
            self._write_record()
        except Exception as exc:  # noqa: BLE001 - Redis away: keep trying, never die
            if self._up_since is not None:
                logger.warning("Worker liveness key not written (%s); retrying", type(exc).__name__)
            self._up_since = None
            self._disconnect()
            return
        if self._up_since is None:
            self._up_since = time.monotonic()

    def _held_tags(self) -> list[str]:
        tags = []
        for tag, request in list(self.held.items()):
            if request.acknowledged:  # acked, rejected or requeued: no longer ours
                self.held.pop(tag, None)
                self._delivered.pop(tag, None)
            else:
                tags.append(tag)
        return tags

    def _write_record(self) -> None:
        client = self._client()
        held = self._held_tags()
        new = [tag for tag in held if tag not in self._delivered]
        if new:
            # When each was delivered (kombu's unacked_index), read once per delivery.
            with client.pipeline(transaction=False) as pipe:
                for tag in new:
                    pipe.zscore(UNACKED_INDEX, tag)
                self._delivered.update(zip(new, pipe.execute(), strict=True))
        now = time.time()
        with client.pipeline(transaction=False) as pipe:  # one round trip
            pipe.set(
                WORKER_KEY_PREFIX + self.worker,
                json.dumps({"at": now, "held": held}),
                ex=max(1, int(self.lost_after)),
            )
            pipe.zadd(WORKERS_INDEX, {self.worker: now})
            last = {tag: self._delivered[tag] for tag in held if self._delivered.get(tag) is not None}
            pipe.set(
                LAST_LIST_PREFIX + self.node,
                json.dumps({"worker": self.worker, "held": last}),
                ex=LAST_LIST_SECONDS,
            )
            pipe.execute()

    def sweep(self) -> list[str]:
        """Put back every orphaned delivery; returns their job ids."""
        client = self._client()
        now = time.time()
        # Only deliveries old enough to be judged (orphaned() needs lost_after), oldest first.
        deliveries = {
            tag.decode(): delivered
            for tag, delivered in client.zrangebyscore(
                UNACKED_INDEX, "-inf", now - self.lost_after, start=0, num=SWEEP_BATCH, withscores=True
            )
        }
        self.largest_reply = max(self.largest_reply, sum(len(tag) + 8 for tag in deliveries))
        if not deliveries:
            return []
        # Read after the deliveries: a worker listing a tag delivered later is harmless.
        workers = self._live_workers(client)
        restored = []
        for tag in orphaned(deliveries, workers, time.time(), self.lost_after):
            job_id = self._restore(tag, deliveries[tag])
            if job_id:
                restored.append(job_id)
        return restored

    def _live_workers(self, client) -> list[WorkerRecord]:
        """Every worker whose liveness key exists. A key lives lost_after seconds from its last
        write, which also stamps the index with the writer's clock: the keys of the workers
        stamped in the last 2 x lost_after are read (so a writer whose clock is behind by up to
        lost_after is not missed), and entries far older than any key are dropped."""
        now = time.time()
        with client.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(WORKERS_INDEX, "-inf", now - 10 * self.lost_after)
            pipe.zrangebyscore(WORKERS_INDEX, now - 2 * self.lost_after, "+inf")
            _, names = pipe.execute()
        names = [name.decode() for name in names]
        raws = client.mget([WORKER_KEY_PREFIX + name for name in names]) if names else []
        self.largest_reply = max(self.largest_reply, sum(len(raw) for raw in raws if raw))
        records = []
        for name, raw in zip(names, raws, strict=True):
            if raw is None:  # expired since its last write: dead
                continue
            value = json.loads(raw)
            records.append(WorkerRecord(name, float(value["at"]), frozenset(value["held"])))
        return records

    def _restore(self, tag, delivered: float) -> str | None:
        """Move the message back to the head of its queue if it is still that delivery."""
        client, channel = self._client(), self._channel
        raw = client.hget(UNACKED, tag)
        if raw is None:
            return None
        message, exchange, routing_key = json.loads(raw)
        job_id = message.get("headers", {}).get("id")
        if job_id and self._finished(job_id):
            # It ran to its end and its worker stopped or died before the acknowledgement
            # reached Redis (seen in a warm shutdown during a Swarm update): running it again
            # would run it twice. The delivery is dropped, as the acknowledgement would have.
            self._drop(tag, delivered, job_id)
            return None
        queues = channel._lookup(exchange, routing_key) or [routing_key]
        priority = channel._get_message_priority(message, reverse=False)
        # Say so before the message is visible again: a worker that takes it at once then
        # writes STARTED after this, not before.
        if job_id:
            job_store.mark_worker_lost(job_id)
        payload = json.dumps(put_back(message))
        moved = False

        def transaction(pipe):
            nonlocal moved
            moved = False
            still_there = pipe.hget(UNACKED, tag) is not None
            same_delivery = pipe.zscore(UNACKED_INDEX, tag) == delivered
            pipe.multi()
            if still_there and same_delivery:
                pipe.zrem(UNACKED_INDEX, tag)
                pipe.hdel(UNACKED, tag)
                for queue in queues:
                    # The head of the queue (consumers pop from the right), as kombu restores.
                    pipe.rpush(channel._q_for_pri(queue, priority), payload)
                moved = True

        client.transaction(transaction, UNACKED, UNACKED_INDEX)
        if moved:
            logger.warning(
                "Job %s: the worker holding it is gone; put back in the queue to run again", job_id
            )
            return job_id
        return None

    @staticmethod
    def _finished(job_id: str) -> bool:
        meta = job_store.read_meta(job_id)
        return meta is not None and meta.get("status") in FINISHED_STATES

    def _drop(self, tag, delivered: float, job_id: str) -> None:
        def transaction(pipe):
            same_delivery = pipe.zscore(UNACKED_INDEX, tag) == delivered
            pipe.multi()
            if same_delivery:
                pipe.zrem(UNACKED_INDEX, tag)
                pipe.hdel(UNACKED, tag)

        self._client().transaction(transaction, UNACKED, UNACKED_INDEX)
        logger.warning(
            "Job %s: finished, but its worker is gone without acknowledging it; "
            "delivery dropped, not run again",
            job_id,
        )

    # --- broker connection -------------------------------------------------------------------

    def _client(self):
        if self._channel is None:
            self._connection = current_app.connection_for_write()
            self._channel = self._connection.default_channel
        return self._channel.client

    def _disconnect(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            try:
                connection.release()
            except Exception:  # noqa: BLE001 - already broken
                pass


WATCH: DeliveryWatch | None = None


def enabled() -> bool:
    return settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://"))


@signals.worker_ready.connect
def _start_watch(sender, **kwargs) -> None:
    global WATCH
    if not enabled() or WATCH is not None:
        return
    WATCH = DeliveryWatch(sender.hostname, settings.JOB_WORKER_LOST_AFTER)
    WATCH.start()


@signals.task_received.connect
def _track_delivery(sender, request, **kwargs) -> None:
    if WATCH is not None:
        WATCH.received(request)


@signals.worker_shutdown.connect
def _stop_watch(sender, **kwargs) -> None:
    global WATCH
    if WATCH is not None:
        WATCH.stop()
        WATCH = None
