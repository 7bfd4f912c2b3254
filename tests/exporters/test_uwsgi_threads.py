"""uWSGI without Python threads (its enable-threads off: uWSGI before 2.0.27
leaves it so unless asked) holds the GIL while a worker waits for
requests: switchtrace's thread barely runs, and spans wait. It says so once,
at start-up, naming the option. uWSGI's own module (``uwsgi``, with its
``has_threads``) exists only in uWSGI's processes, and the pyuwsgi of the
test extra has threads on whatever it is told: the script puts a module of
that name in ``sys.modules`` as uWSGI does. Checked by hand against a real
uWSGI 2.0.21 (the warning at start-up; none with enable-threads, nor under
2.0.30 and 2.0.31); its has_threads is 0 by default in 2.0.21, 2.0.25 and
2.0.26, and 1 in 2.0.27, 2.0.28, 2.0.30 and 2.0.31."""

from __future__ import annotations

import json
import textwrap

import pytest

from ..support import run_script

SCRIPT = textwrap.dedent(
    """
    import io, json, logging, sys, types
    sys.path[:0] = [{src!r}]
    case, path = sys.argv[1:]
    if case != "no-uwsgi":
        uwsgi = types.ModuleType("uwsgi")
        uwsgi.has_threads = 0 if case == "threads-off" else 1
        sys.modules["uwsgi"] = uwsgi
    said = []

    class Said(logging.Handler):
        def emit(self, record):
            said.append((record.levelname, record.getMessage()))

    logging.getLogger("switchtrace").addHandler(Said())
    from switchtrace.exporters.console import ConsoleReporter
    from switchtrace.exporters.pipeline import ExportOptions, SpanPipeline

    SpanPipeline(ExportOptions(exporter="file", file_path=path))
    ConsoleReporter(stream=io.StringIO())
    print(json.dumps(said))
    """
)

WARNING = (
    "switchtrace: uWSGI runs without Python threads, so switchtrace's thread only runs "
    "while a worker runs Python code, never while it waits for requests: spans and "
    "console lines wait for the worker's next requests or its exit, and what does not "
    "fit in the queue meanwhile is dropped. Turn threads on in uWSGI's options: "
    "enable-threads = true (or threads = N)."
)


@pytest.mark.parametrize(
    ("case", "said"),
    [
        # Once for the two threads, the span pipeline's and the console's.
        ("threads-off", [["WARNING", WARNING]]),
        ("threads-on", []),
        ("no-uwsgi", []),
    ],
)
def test_uwsgi_without_threads_is_told_once(case, said, tmp_path):
    assert json.loads(run_script(SCRIPT, case, tmp_path / "traces.jsonl")) == said
