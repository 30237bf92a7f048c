"""Bench-only: the naive Django + Celery job API the common guides teach, as a peer baseline.

scripts/bench compares the stack's job API with this app in the same run, on the same gunicorn
and image (row 6). It is installed only with BENCH_PEER_APP=1 (the bench stack sets it) and
refused in production (APP_ENV=production): config/settings/core.py. Nothing else imports it.
"""
