"""CPU per finished state written: Celery's GET-then-SET (two round trips, as the stack wrote
before issue 25) against JobResultBackend's one script, alternated (old, new, new, old, three
times), 2,000 writes each; this process's CPU and the Redis server's (INFO cpu) per write.

    docker compose -p djcs-bench exec -T worker python - < scripts/benchlib/micro_store.py

Its ids start with "microbench-"; their states and index entries are removed at the end.
"""

import time
import uuid

import django

django.setup()

from celery import current_app, states  # noqa: E402

b = current_app.backend
r = b.client


def redis_cpu():
    i = r.info("cpu")
    return i["used_cpu_sys"] + i["used_cpu_user"]


def old(task_id, result, state):
    # Celery 5.6's KeyValueStoreBackend._store_result with the stack's previous finished write.
    meta = b._get_result_meta(result=result, state=state, traceback=None, request=None)
    meta["task_id"] = task_id
    current = b._get_task_meta_for(task_id)
    if current["status"] == states.SUCCESS:
        return
    key, value = b.get_key_for_task(task_id), b.encode(meta)
    with r.pipeline() as pipe:
        pipe.setex(key, b.expires, value)
        pipe.zadd("bench:finished", {task_id: time.time()})
        pipe.publish(key, value)
        pipe.execute()


def new(task_id, result, state):
    b._store_result(task_id, result, state)


N = 2000
res = {"old": [], "new": []}
for _round in range(3):
    for name, fn in (("old", old), ("new", new), ("new", new), ("old", old)):
        ids = [f"microbench-{uuid.uuid4()}" for _ in range(N)]
        c0, r0 = time.process_time(), redis_cpu()
        for i in ids:
            fn(i, {"x": 1}, states.SUCCESS)
        c1, r1 = time.process_time(), redis_cpu()
        res[name].append(((c1 - c0) / N * 1e6, (r1 - r0) / N * 1e6))
        r.delete(*[b.get_key_for_task(i) for i in ids])
        # The new path lists them for the archive, as it does every finished job.
        r.zrem("jobs:finished", *ids)
r.delete("bench:finished")
for name, v in res.items():
    cs = sorted(x[0] for x in v)
    rs = sorted(x[1] for x in v)
    print(
        f"{name}: client CPU per write median {cs[len(cs) // 2]:.0f} us (min {cs[0]:.0f}), redis CPU median {rs[len(rs) // 2]:.0f} us (min {rs[0]:.0f})"
    )
