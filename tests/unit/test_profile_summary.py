"""unit: no services. scripts/profile-web's summary of py-spy's collapsed stacks."""

from tests.support.scripts import load_script


def load():
    return load_script("profile-web")


REQUEST = "ThreadWorker.handle (gunicorn/workers/gthread.py:553);WSGIHandler.__call__ (django/core/handlers/wsgi.py:124)"
STACKS = "\n".join(
    [
        f"{REQUEST};submit (jobs/job_actions.py:63);Model._do_insert (django/db/models/base.py:1210);Connection.wait (psycopg/connection.py:495) 50",
        f"{REQUEST};TokenAuthentication.authenticate_credentials (jobs/auth.py:48);read (redis/connection.py:1) 20",
        f"{REQUEST};publish (jobs/publisher.py:150);execute (redis/client.py:1589) 20",
        f"{REQUEST};publish (jobs/publisher.py:140);send_task (celery/app/base.py:842) 10",
        "ThreadWorker.run (gunicorn/workers/gthread.py:425);EpollSelector.select (selectors.py:452) 100",
    ]
)


def test_request_samples_are_split_by_what_they_wait_on():
    in_request, shares = load().summarize(STACKS)
    assert in_request == 0.5
    shares = dict(shares)
    assert shares["PostgreSQL: the job record's INSERT and commit"] == 0.5
    assert shares["token check (Redis GET of the cache entry; knox's query on a miss)"] == 0.2
    assert shares["Redis: the one publish transaction (state, record copy, message, event)"] == 0.2
    assert shares["Celery/kombu: building the message and the task-sent event"] == 0.1


def test_no_request_samples_give_an_empty_summary():
    assert load().summarize("garbage\n") == (0.0, [])


def test_every_bench_helper_main_calls_is_there():
    # main() calls helpers of scripts/bench's library; a rename there once broke the script at its
    # first call, after the stack was found. They are now imported when the script loads.
    script = load()
    helpers = [script.Stack, script.compose_env, script.paused, script.docker, script.wrk]
    assert all(callable(helper) for helper in helpers)
    assert script.NOOP_BODY == '{"kind": "noop"}'
