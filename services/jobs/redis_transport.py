"""kombu's Redis transport for the stack: a worker's writes about the messages it holds wait for
room while Redis is full, instead of failing.

On the Redis broker a worker takes a message with BRPOP and then records it as unacknowledged
(ZADD + HSET), and acknowledges it later (ZREM + HDEL, in MULTI). Redis at maxmemory (no
eviction) refuses those writes - inside MULTI even the ZREM - and kombu then raises in the
worker's event loop: the worker exits, and a message already taken from the queue but not yet
recorded is in no list at all (jobs.lost_messages publishes it again, minutes later). Redis can pass
maxmemory for a moment even while new jobs are refused at JOB_STORE_ADMIT_PERCENT: replies and
event streams being written out count too. So these writes are retried until they pass; the
worker's loop waits meanwhile, while its jobs and the archive (jobs/archive.py) free memory.

Used by every role on the Redis broker (CELERY_BROKER_TRANSPORT in config/settings/celery_jobs.py).
"""

from kombu.transport import redis as kombu_redis

from jobs.redis_memory import retry_while_full


class QoS(kombu_redis.QoS):
    def append(self, message, delivery_tag):
        retry_while_full(
            lambda: super(QoS, self).append(message, delivery_tag), "recording a message taken from the queue"
        )

    def ack(self, delivery_tag):
        retry_while_full(lambda: super(QoS, self).ack(delivery_tag), "acknowledging a message")

    def reject(self, delivery_tag, requeue=False):
        retry_while_full(
            lambda: super(QoS, self).reject(delivery_tag, requeue=requeue), "rejecting a message"
        )


class Channel(kombu_redis.Channel):
    QoS = QoS


class Transport(kombu_redis.Transport):
    Channel = Channel
