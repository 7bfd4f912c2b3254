from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ...explain import ApplicationError, ExplainError, render


class Command(BaseCommand):
    # It says the same as the switchtrace.W003 checks, in more detail.
    requires_system_checks: list[str] = []
    help = (
        "Predict each kind of request's context switches from MIDDLEWARE, with their "
        "causes and fixes; --measure serves one request of each kind to compare. Exit "
        "status 2: bad input (an argument, MIDDLEWARE, ROOT_URLCONF, an ALLOWED_HOSTS that "
        "no request can pass); 1: the project's code raised, or answered a measured request "
        "with a status of 400 or more, from a middleware before the view, or with a stream "
        "still going after 30 s (its figures are then not the view's)."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--url", help="a URL of this project: predict for its view")
        parser.add_argument(
            "--measure", action="store_true", help="also measure one request (needs --url)"
        )

    def handle(self, *args: Any, url: str | None = None, measure: bool = False, **options: Any):
        # The same messages and exit statuses as ``switchtrace explain``.
        try:
            render(
                url, measure, self.stdout, warn=lambda text: self.stderr.write(f"warning: {text}")
            )
        except ApplicationError as exc:
            self.stdout.flush()  # the report first, then the error after it
            if exc.left_running:  # a thread the interpreter would wait for at exit
                self.stderr.write(f"CommandError: {exc}")
                self.stderr.flush()
                os._exit(1)
            raise CommandError(str(exc), returncode=1) from None
        except ExplainError as exc:
            raise CommandError(str(exc), returncode=2) from None
