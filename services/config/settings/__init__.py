"""Django settings: the ONE place the app containers read their environment, split by concern.

Every variable is documented in .env.example. Development defaults make `docker compose up`
work with no .env; APP_ENV=production refuses to start while any secret is empty or a dev
default (config/checks.py). Any variable NAME may instead come from a file named by NAME_FILE
(Docker and Swarm secrets): config/settings/environment.py.

The modules, in the order they are read (a later one may extend what an earlier one set):
core (secrets, apps, PostgreSQL, Redis), api (the job API and the pages), celery_jobs (jobs,
Celery, both brokers, housekeeping), operations (logging, metrics, production hardening).
"""

from config.settings.api import *  # noqa: F403
from config.settings.celery_jobs import *  # noqa: F403
from config.settings.core import *  # noqa: F403
from config.settings.operations import *  # noqa: F403
