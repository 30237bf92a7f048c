"""Flower's configuration file (Flower loads ./flowerconfig.py from its working directory).

Credentials come from FLOWER_BASIC_AUTH, which compose/start/start-flower sets from
FLOWER_USER and FLOWER_PASSWORD so the password never appears on a command line.
"""

from flower.views.monitor import Metrics
from tornado.web import authenticated

address = "0.0.0.0"
port = 5555
# Keep task history across restarts, on the flower volume, saved every minute as well as at exit.
persistent = True
db = "/data/flower/flower.db"
state_save_interval = 60_000
# Forget workers that have been offline for a day (scaled-down or recreated containers).
purge_offline_workers = 24 * 3600
# Tasks kept in memory and in the saved state. Flower's default, 100,000, lets its memory grow
# with every job for a long while; 10,000 bounds it (docs/benchmarks.md: memory at rest).
# Job states stay readable through the API for JOB_RESULT_EXPIRES whatever Flower forgets.
max_tasks = 10_000

# Flower serves /metrics without authentication even when basic auth is on, and the metrics
# name every task and worker. Require the same credentials there; /healthcheck stays open
# for the container healthcheck (it only says "OK").
Metrics.get = authenticated(Metrics.get)
