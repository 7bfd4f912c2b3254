"""gunicorn reads this file from its working directory."""

# uvicorn's worker (-k uvicorn_worker.UvicornWorker) would otherwise die on
# SIGTERM without the exit hooks that write the spans still waiting for their
# batch. gunicorn's own workers are left alone.
from switchtrace.gunicorn import post_worker_init  # noqa: F401
