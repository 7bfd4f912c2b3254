"""``python -m tests.oracle_run SEED|CONFIGURATION ...``, from the checkout's
root: serves the configuration of each seed (``tests.oracle_app.generate``),
or one given as JSON (``{"server": "asgi", "middleware": [...], "url":
"/sync/"}``), two requests through one pair of handlers, and prints one
JSON line per request: the configuration, the oracle's figures for the whole
request and as the headers were sent, switchtrace's record totals, and the
response's headers.

A process of its own, in this order: the oracle's profiler is set before
Django, switchtrace or any thread a request may use is started.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tests.oracle import Oracle


def main(arguments: list[str]) -> None:
    oracle = Oracle()
    oracle.install()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples" / "project"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
    import django

    django.setup()
    from switchtrace.tracer import guard
    from tests.oracle_app import Configuration, generate, serve

    swallowed: list[str] = []
    guard.set_error_hook(lambda exc, where: swallowed.append(f"{where}: {exc!r}"))
    for argument in arguments:
        seed = None
        if argument.startswith("{"):
            given = json.loads(argument)
            configuration = Configuration(given["server"], tuple(given["middleware"]), given["url"])
        else:
            seed = int(argument)
            configuration = generate(seed)
        for number, outcome in enumerate(serve(oracle, configuration), 1):
            outcome.update(seed=seed, request=number, swallowed=swallowed[:])
            swallowed.clear()
            print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
