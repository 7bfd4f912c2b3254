from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ...explain import ExplainError, render


class Command(BaseCommand):
    # It says the same as the switchtrace.W003 checks, in more detail.
    requires_system_checks: list[str] = []
    help = (
        "Predict each kind of request's context switches from MIDDLEWARE, with their "
        "causes and fixes; --measure serves one request of each kind to compare."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--url", help="a URL of this project: predict for its view")
        parser.add_argument(
            "--measure", action="store_true", help="also measure one request (needs --url)"
        )

    def handle(self, *args: Any, url: str | None = None, measure: bool = False, **options: Any):
        try:
            render(url, measure, self.stdout)
        except ExplainError as exc:
            raise CommandError(str(exc)) from None
