"""unit: no services. Which unacknowledged deliveries count as held by no live worker
(jobs.dead_workers.orphaned), and how a put-back message is marked."""

from jobs.dead_workers import CLOCK_MARGIN, WorkerRecord, orphaned, put_back

LOST_AFTER = 30.0
NOW = 10_000.0


def worker(name, at, *held):
    return WorkerRecord(name, at, frozenset(held))


def test_a_delivery_no_live_worker_lists_is_orphaned():
    deliveries = {"t-dead": NOW - 100}
    assert orphaned(deliveries, [worker("w1", NOW - 1, "t-other")], NOW, LOST_AFTER) == ["t-dead"]


def test_a_delivery_a_live_worker_lists_is_left_alone():
    deliveries = {"t-held": NOW - 100, "t-dead": NOW - 100}
    workers = [worker("w1", NOW - 1), worker("w2", NOW - 2, "t-held")]
    assert orphaned(deliveries, workers, NOW, LOST_AFTER) == ["t-dead"]


def test_a_recent_delivery_waits_for_lost_after():
    # Taken 10 s ago by a worker that has not written its list since: not yet decided.
    deliveries = {"t-new": NOW - 10, "t-old": NOW - LOST_AFTER}
    assert orphaned(deliveries, [worker("w1", NOW)], NOW, LOST_AFTER) == ["t-old"]


def test_one_live_worker_with_a_list_older_than_the_delivery_leaves_it_undecided():
    # w2 wrote before the delivery (plus the clock margin): it may have taken the message since.
    delivered = NOW - 40
    workers = [worker("w1", NOW - 1), worker("w2", delivered + CLOCK_MARGIN / 2)]
    assert orphaned({"t": delivered}, workers, NOW, LOST_AFTER) == []
    workers = [worker("w1", NOW - 1), worker("w2", delivered + CLOCK_MARGIN)]
    assert orphaned({"t": delivered}, workers, NOW, LOST_AFTER) == ["t"]


def test_no_live_worker_at_all_orphans_every_old_delivery():
    assert orphaned({"a": NOW - 31, "b": NOW - 29}, [], NOW, LOST_AFTER) == ["a"]


def test_put_back_marks_the_message_redelivered_as_kombu_does():
    message = {"body": "e30=", "headers": {"id": "x"}, "properties": {"delivery_info": {"exchange": "jobs"}}}
    marked = put_back(message)
    assert marked["headers"]["redelivered"] is True
    assert marked["properties"]["delivery_info"]["redelivered"] is True
    assert marked["properties"]["delivery_info"]["exchange"] == "jobs"
    assert put_back({})["headers"]["redelivered"] is True
