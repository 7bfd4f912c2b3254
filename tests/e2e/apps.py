"""A test-only Django app for the servers the e2e tests start: it appends every
finished request record, as one JSON line, to $SWITCHTRACE_TEST_RECORDS."""

from __future__ import annotations

import json
import os
import tempfile

from django.apps import AppConfig


class RecorderConfig(AppConfig):
    name = "tests.e2e"
    label = "switchtrace_test_recorder"

    def ready(self) -> None:
        from switchtrace import tracer

        path = os.environ["SWITCHTRACE_TEST_RECORDS"]

        def write(record: tracer.RequestRecord) -> None:
            line = json.dumps(
                {
                    "kind": record.kind,
                    "path": record.attributes.get("url.path"),
                    "query": record.attributes.get("url.query"),
                    "status": record.attributes.get("http.response.status_code"),
                    "at_headers": list(vars(record.at_headers).values())
                    if record.at_headers
                    else None,
                    "totals": list(vars(record.totals()).values()),
                    # Django >= 6.0 writing a large body to disk (ASGIHandler.read_body).
                    "body_writes": sum(
                        getattr(c.func, "__func__", None) is tempfile.SpooledTemporaryFile.write
                        for c in record.crossings
                    ),
                    "pid": os.getpid(),
                }
            )
            with open(path, "a") as out:
                out.write(line + "\n")

        tracer.add_listener(write)
