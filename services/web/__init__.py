"""Web runtime beside Django's views: middleware, JSON error answers, /healthz, the gunicorn worker."""
