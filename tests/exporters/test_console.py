"""The console exporter's line and its thread: what mutation testing of
exporters/console.py found unpinned (the rest is in test_outputs.py)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import io
import signal
import sys
import threading
import time
import weakref

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.test import Client, override_settings

from switchtrace import tracer
from switchtrace.django_app import components, telemetry
from switchtrace.example import asgi_request, run_in_server_loop, wsgi_request
from switchtrace.exporters import ConsoleReporter, format_record
from switchtrace.exporters.console import LOG_INTERVAL
from switchtrace.testing import record_requests

from ..django_app.test_middleware import project

#: The figures of GET /async-to-sync/ in the test project, no middleware.
ASYNC_TO_SYNC = "GET /async-to-sync/ 200: 6 switches (6 before headers), 6 hops, 3 loops, 3 threads"


@pytest.fixture
def async_to_sync_record():
    """The record of a real request whose view bridges code that names no
    component of its own (async_to_sync of a helper)."""
    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        with record_requests() as records:
            Client().get("/async-to-sync/")
    [record] = records
    return record


def test_a_path_with_control_characters_cannot_start_a_console_line_of_its_own(records):
    """A request's path is the client's, decoded by its server (%0D%0A a
    carriage return and a newline under gunicorn and uvicorn, %1B an escape,
    %E2%80%A8 a line separator, %E2%80%AE a right-to-left override), and so
    is its method: the console line shows what is not printable in them
    (control and format characters, separators but the space, unassigned
    code points) as Python writes them in a string, so that a client can neither
    write a line that reads as another request's nor move the terminal's
    cursor or reorder what it shows. (They were written as they came: the
    path below made two lines, the second a forged request.)"""
    forged = "GET /admin/ 200: 0 switches (0 before headers), 0 hops, 0 loops, 0 threads"
    odd = "\u2028\u202e\uffff\U000e0001\x85/é"
    with project("none", with_switchtrace_middleware=False) as (asgi, wsgi):
        wsgi_request(wsgi, "/x\r\n" + forged + "\n\x1b[2J\x85\x7f", query="")
        run_in_server_loop(asgi_request(asgi, "/y\n" + forged + odd, query="", method="GE\tT"))
    wsgi_line, asgi_line = (format_record(record) for record in records)
    assert wsgi_line == (
        # (The byte 0x85 alone is not UTF-8: percent-encoded again, as Django does.)
        "GET /x\\r\\n" + forged + "\\n\\x1b[2J%85\\x7f 404: "
        "0 switches (0 before headers), 0 hops, 0 loops, 0 threads"
    )
    # Printable text, other scripts' included, is shown as it is.
    shown = "\\u2028\\u202e\\uffff\\U000e0001\\x85/é"
    assert asgi_line.startswith("GE\\tT /y\\n" + forged + shown + " 404: ")
    assert asgi_line.isprintable()


@contextlib.contextmanager
def recording(max_events: int = tracer.DEFAULT_MAX_EVENTS):
    """tracer.recording(), the test settings' span pipeline detached: it
    describes every record in its thread, and these are the console's to
    describe."""
    with telemetry.detached(), tracer.recording(max_events=max_events) as record:
        yield record


def own_less_resolve(crossing, record):
    """A resolve of the application's own: a plain function, without the
    ``own`` method of switchtrace's."""
    return components.resolve(crossing, record)


def test_the_top_causes_name_the_bridged_code_as_the_resolve_can(async_to_sync_record):
    """switchtrace's resolve names the view and what it bridged; a resolve
    without ``own`` names the view alone; none names the bridged callable
    (ConsoleReporter's default)."""
    record = async_to_sync_record
    assert format_record(record, components.resolve) == (
        ASYNC_TO_SYNC + "; top: async_to_sync_view \u2192 noop 6"
    )
    assert format_record(record, own_less_resolve) == ASYNC_TO_SYNC + "; top: async_to_sync_view 6"
    # A new record: a crossing described once keeps its component.
    with override_settings(SWITCHTRACE={"ENABLED": False}, MIDDLEWARE=[]):
        with record_requests() as records:
            Client().get("/async-to-sync/")
    assert format_record(records[0]) == ASYNC_TO_SYNC + "; top: noop 6"


async def anoop() -> None:
    pass


def returns_at_once() -> None:
    pass


def work_left_running(inside: threading.Event, release: threading.Event) -> None:
    inside.set()
    release.wait(10)


def test_a_bridge_call_returning_after_its_request_ended_counts_one_switch_in_the_top():
    """A task the request left running, in a sync_to_async when the request
    ends: its start is one of the request's switches, and its return, which
    comes later, is not counted. The top causes counted it once it had come
    (4 switches of 3), so that the console's line said 1 or 2 for it as its
    thread formatted it before or after. A call that returned before the
    end counts both ways, the request running or ended."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    inside, release = threading.Event(), threading.Event()
    line = (
        "BLOCK : 3 switches, 3 hops, 0 loops, 1 thread; top: returns_at_once 2, work_left_running 1"
    )

    async def main():
        formatted = []
        try:
            with recording() as record:
                await sync_to_async(returns_at_once, thread_sensitive=False, executor=pool)()
                call = sync_to_async(work_left_running, thread_sensitive=False, executor=pool)
                task = asyncio.ensure_future(call(inside, release))
                while not inside.is_set():
                    await asyncio.sleep(0)
                formatted.append(format_record(record))  # the request running
            formatted.append(format_record(record))  # ended, the call never returned
        finally:
            release.set()
        await task
        formatted.append(format_record(record))  # returned after the request
        return record, formatted

    try:
        record, formatted = asyncio.run(main())
    finally:
        pool.shutdown(wait=True)
    assert record.totals() == tracer.Figures(3, 3, 0, 1)
    assert formatted == [line] * 3


# -- the console's thread ------------------------------------------------------


@pytest.fixture
def block_record():
    """A real record with nothing in it (its line: BLOCK_LINE)."""
    with recording() as record:
        pass
    return record


#: The line of ``block_record``.
BLOCK_LINE = "BLOCK : 0 switches, 0 hops, 0 loops, 0 threads\n"


class GatedStream(io.StringIO):
    """A stream nobody reads (a full pipe): each write tells that it waits
    (``in_write``) and waits for the test to let it through."""

    def __init__(self):
        super().__init__()
        self._gate = threading.Semaphore(0)
        self._waiting = threading.Semaphore(0)

    def write(self, text):
        self._waiting.release()
        assert self._gate.acquire(timeout=10)
        return super().write(text)

    def in_write(self):
        """Wait until the console's thread is in its next write."""
        assert self._waiting.acquire(timeout=10)

    def let_through(self, lines=1):
        for _ in range(lines):
            self._gate.release()


def warnings_of(caplog):
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


def test_the_console_queue_holds_512_records_by_default(block_record, caplog):
    stream = GatedStream()
    console = ConsoleReporter(stream=stream)
    try:
        with caplog.at_level("WARNING", logger="switchtrace"):
            console(block_record)
            stream.in_write()  # the first line taken: the queue is empty
            for _ in range(513):
                console(block_record)
            assert console.dropped == 1
            stream.let_through(513)
            assert console.flush(10)
    finally:
        console.shutdown()
    assert (console.written, console.dropped, console.failed) == (513, 1, 0)
    assert stream.getvalue() == BLOCK_LINE * 513
    assert warnings_of(caplog) == [
        "switchtrace: console queue full (512 records); the lines of 1 request dropped so far"
    ]


def one_drop_told(console, stream, record):
    """A console of one record's queue, its stream a GatedStream: a line
    written, one queued and one dropped, that drop told; the console's thread
    is then held in the queued line's write."""
    console(record)
    stream.in_write()
    console(record)  # queued
    console(record)  # dropped
    stream.let_through()  # that line, then the drop told of
    stream.in_write()  # the queued line


def test_the_lines_dropped_are_told_of_once_a_minute_and_only_new_ones(block_record, caplog):
    """A minute is not waited for: the time of the last warning is moved back
    one while the console's thread is held in a write."""
    stream = GatedStream()
    console = ConsoleReporter(stream=stream, queue_size=1)
    told = [
        "switchtrace: console queue full (1 record); the lines of 1 request dropped so far",
        "switchtrace: console queue full (1 record); the lines of 2 requests dropped so far",
    ]
    try:
        with caplog.at_level("WARNING", logger="switchtrace"):
            one_drop_told(console, stream, block_record)
            assert warnings_of(caplog) == told[:1]
            console(block_record)  # queued
            console(block_record)  # dropped
            stream.let_through()  # told of no sooner than a minute after the first
            stream.in_write()
            assert warnings_of(caplog) == told[:1]
            console._last_drop_log -= LOG_INTERVAL  # a minute has passed
            stream.let_through()
            assert console.flush(10)
            assert warnings_of(caplog) == told
            console._last_drop_log -= LOG_INTERVAL  # and another
            console(block_record)
            stream.in_write()
            stream.let_through()  # no drop since the last warning: nothing to tell
            assert console.flush(10)
    finally:
        console.shutdown()
    assert (console.written, console.dropped, console.failed) == (4, 2, 0)
    assert stream.getvalue() == BLOCK_LINE * 4
    assert warnings_of(caplog) == told


def test_the_lines_a_stream_refuses_are_told_of_once_a_minute(block_record, caplog):
    """A closed stream; a minute is not waited for, as above."""
    stream = io.StringIO()
    stream.close()
    with pytest.raises(ValueError) as closed:  # (its words vary with the Python)
        stream.write("")
    console = ConsoleReporter(stream=stream)
    try:
        with caplog.at_level("WARNING", logger="switchtrace"):
            console(block_record)
            console(block_record)
            assert console.flush(10)
            console._last_fail_log -= LOG_INTERVAL  # a minute has passed
            console(block_record)
            assert console.flush(10)
    finally:
        console.shutdown()
    assert (console.written, console.dropped, console.failed) == (0, 0, 3)
    assert warnings_of(caplog) == [
        f"switchtrace: a console line could not be written (ValueError: {closed.value}); "
        f"{lost} so far"
        for lost in ("1 line lost", "3 lines lost")
    ]


def test_the_losses_no_warning_told_are_told_at_shutdown(block_record, caplog):
    """A warning comes at most once a minute: the drops and the refused lines
    after the last one were never told (a server stopped within the minute
    of its last warning). The shutdown tells them, once."""
    stream = GatedStream()
    console = ConsoleReporter(stream=stream, queue_size=1)
    with caplog.at_level("WARNING", logger="switchtrace"):
        one_drop_told(console, stream, block_record)
        console(block_record)  # queued
        console(block_record)  # dropped: untold, within the minute
        console(block_record)  # dropped: untold
        stream.close()  # the line held, and the next, are refused
        stream.let_through(2)
        assert console.flush(10)
        console.shutdown()
        console.shutdown()  # once
    assert (console.written, console.dropped, console.failed) == (1, 3, 2)
    assert warnings_of(caplog)[0::2] == [
        "switchtrace: console queue full (1 record); the lines of 1 request dropped so far",
        "switchtrace: console shut down with the lines of 3 requests dropped and 2 lines lost "
        "in all (the lines of 2 requests dropped and 1 line lost since the last warning)",
    ]
    assert warnings_of(caplog)[1].startswith(
        "switchtrace: a console line could not be written (ValueError: "
    )


def test_the_shutdowns_line_counts_in_all_the_lines_its_time_ran_out_on(block_record, caplog):
    """The console's thread held in a write past the shutdown's time: the
    queued line is told by the shutdown's own warning, the drop before it by
    the last line, whose "in all" counts both (it said 1)."""
    stream = GatedStream()
    console = ConsoleReporter(stream=stream, queue_size=1)
    with caplog.at_level("WARNING", logger="switchtrace"):
        console(block_record)
        stream.in_write()
        console(block_record)  # queued
        console(block_record)  # dropped, untold: the thread is held
        console.shutdown(0.2)
        stream.let_through()  # the line held, written once the shutdown has given up
        console._worker.join(10)
    assert not console._worker.is_alive()
    assert (console.written, console.dropped, console.failed) == (1, 2, 0)
    assert warnings_of(caplog) == [
        "switchtrace: shut down with the console lines of 1 request not written (the "
        "shutdown's time ran out)",
        "switchtrace: console shut down with the lines of 2 requests dropped in all (the lines "
        "of 1 request dropped since the last warning)",
    ]


def test_a_ctrl_c_during_the_exit_hooks_wait_tells_what_it_leaves(block_record, caplog):
    """The exit hook's shutdown waits for a line held in its write; a Ctrl-C
    then (SIGINT, raised once the shutdown has begun) ends the wait with one
    warning naming the line still queued, and no KeyboardInterrupt."""
    stream = GatedStream()
    console = ConsoleReporter(stream=stream, queue_size=2)

    def ctrl_c():
        # Once the main thread waits in the join (a signal that comes just
        # before it blocks is only seen once the wait has timed out).
        main = threading.main_thread().ident
        for _ in range(1000):
            frame = sys._current_frames().get(main)
            if (
                frame is not None
                and frame.f_globals.get("__name__") == "threading"
                and frame.f_code.co_name in ("_wait_for_tstate_lock", "join")  # (3.13: join)
            ):
                break
            time.sleep(0.01)
        time.sleep(0.05)
        signal.pthread_kill(main, signal.SIGINT)

    with caplog.at_level("WARNING", logger="switchtrace"):
        console(block_record)
        stream.in_write()
        console(block_record)  # queued
        interrupt = threading.Thread(target=ctrl_c)
        interrupt.start()
        console._shutdown_at_exit()
        interrupt.join(10)
        # (The thread, left to itself, writes both lines, then stops.)
        stream.let_through(2)
        console._worker.join(10)
    assert not console._worker.is_alive()
    assert warnings_of(caplog) == [
        "switchtrace: shutdown interrupted (Ctrl-C) with the console lines of 1 request not written"
    ]


def test_a_console_with_nothing_untold_says_nothing_at_shutdown(block_record, caplog):
    """Every loss told by its warning: no line at shutdown (the tests above
    that end with every loss told check this too)."""
    stream = io.StringIO()
    stream.close()
    console = ConsoleReporter(stream=stream)
    with caplog.at_level("WARNING", logger="switchtrace"):
        console(block_record)
        assert console.flush(10)
        console.shutdown()
    assert console.failed == 1
    assert len(warnings_of(caplog)) == 1


def test_a_shutdown_writes_the_lines_queued_while_a_line_was_being_written(block_record, caplog):
    """The console's thread, held in a write when the shutdown begins, writes
    what is queued once it is free, within the shutdown's time."""
    stream = GatedStream()
    console = ConsoleReporter(stream=stream)
    with caplog.at_level("WARNING", logger="switchtrace"):
        console(block_record)
        stream.in_write()
        console(block_record)
        stopping = threading.Thread(target=console.shutdown)
        stopping.start()
        assert console._stopping.wait(10)
        stream.let_through(2)
        stopping.join(10)
    assert not console._worker.is_alive()
    assert (console.written, console.dropped, console.failed) == (2, 0, 0)
    assert stream.getvalue() == BLOCK_LINE * 2
    assert warnings_of(caplog) == []


def test_the_console_lets_go_of_a_record_before_writing_its_line():
    """A stream slow to take the line, or a server idle after it, holds no
    record (the request's crossings, its view's objects) in the console's
    thread."""
    stream = GatedStream()
    console = ConsoleReporter(stream=stream)
    try:
        with recording() as record:
            pass
        collected = weakref.ref(record)
        console(record)
        del record
        stream.in_write()
        gc.collect()
        assert collected() is None
        stream.let_through()
        assert console.flush(10)
    finally:
        console.shutdown()
    assert (console.written, stream.getvalue()) == (1, BLOCK_LINE)


def test_without_a_stream_the_lines_go_to_stderr_as_it_is_when_written(block_record, monkeypatch):
    console = ConsoleReporter()
    try:
        for _ in range(2):
            stderr = io.StringIO()
            monkeypatch.setattr(sys, "stderr", stderr)
            console(block_record)
            assert console.flush(10)
            assert stderr.getvalue() == BLOCK_LINE
    finally:
        console.shutdown()
    assert (console.written, console.dropped, console.failed) == (2, 0, 0)


class Unresolvable(Exception):
    pass


def failing_resolve(crossing, record):
    """An application's resolve that fails."""
    raise Unresolvable("no component")


def test_a_line_that_cannot_be_formatted_is_dropped_counted_and_swallowed(block_record, swallowed):
    with recording() as record:
        async_to_sync(anoop)()
    stream = io.StringIO()
    console = ConsoleReporter(failing_resolve, stream=stream)
    try:
        console(record)
        console(block_record)  # no crossing: nothing to resolve
        assert console.flush(10)
    finally:
        console.shutdown()
    assert (console.written, console.dropped, console.failed) == (1, 1, 0)
    assert stream.getvalue() == BLOCK_LINE
    assert [(where, type(exc)) for where, exc in swallowed] == [("console line", Unresolvable)]
    swallowed.clear()


def _recorded(*funcs, max_events: int = 1000):
    """The record of a block bridging each of ``funcs`` in turn."""

    async def main():
        await sync_to_async(lambda: None)()  # (asgiref's thread started outside)
        with telemetry.detached(), tracer.recording(max_events=max_events) as record:
            for func in funcs:
                await sync_to_async(func)()
        return record

    return asyncio.run(main())


def test_a_backslash_in_the_path_is_written_as_python_writes_it(records):
    """A path holding a backslash then 'n' was written as the path holding a
    newline is: a reader could not tell a harmless path from an escaped one."""
    with project("none", with_switchtrace_middleware=False) as (_asgi, wsgi):
        wsgi_request(wsgi, "/a\\n", query="")
        wsgi_request(wsgi, "/a\n", query="")
    lines = [format_record(record) for record in records]
    assert [line.split(" 404: ")[0] for line in lines] == ["GET /a\\\\n", "GET /a\\n"]


def test_a_cause_name_that_is_not_printable_cannot_start_a_line_of_its_own():
    """Names are the code's, not the client's, but a class made at run time
    can be named anything: the line split in two, the second a forged
    request, and the escape reached the terminal."""

    def forged():
        pass

    forged.__qualname__ = "evil\n\x1b[31mGET /fake/ 200: 0 switches"
    line = format_record(_recorded(forged))
    assert line.isprintable()
    assert line.endswith("; top: evil\\n\\x1b[31mGET /fake/ 200: 0 switches 2")


def test_a_line_stays_shorter_than_what_a_pipe_writes_whole(records):
    """Workers sharing one stderr pipe: the kernel keeps a write whole only
    up to PIPE_BUF (4096 bytes), and a client's 40,000-character path had
    another worker's line land in the middle of its own. The path is cut
    at 400 characters (what is left out counted), a cause's name at 60: where
    the cut shortens it."""

    def named():
        pass

    named.__qualname__ = "n" * 200
    with project("none", with_switchtrace_middleware=False) as (_asgi, wsgi):
        # (as a WSGI server hands it over: the UTF-8 bytes, read as Latin-1)
        wsgi_request(wsgi, ("/" + "\u20ac" * 39_999).encode().decode("latin-1"), query="")
    [record] = records
    line = format_record(record)
    assert line.startswith("GET /" + "\u20ac" * 399 + "... (39,600 characters more) 404: ")
    long_named = format_record(_recorded(named))
    assert long_named.endswith("; top: " + "n" * 60 + "... (140 characters more) 2")
    assert len(line.encode()) < 4096
    # Cut only where that shortens it: 1 or 24 characters more are shown
    # whole (the cut would add "... (24 characters more)"), 25 are cut.
    named.__qualname__ = "n" * 61
    assert format_record(_recorded(named)).endswith("; top: " + "n" * 61 + " 2")
    named.__qualname__ = "n" * 84
    assert format_record(_recorded(named)).endswith("; top: " + "n" * 84 + " 2")
    named.__qualname__ = "n" * 85
    assert format_record(_recorded(named)).endswith(
        "; top: " + "n" * 60 + "... (25 characters more) 2"
    )
    # Escaped, the rest is longer than it reads: 5 NULs are 20 characters,
    # 6 are 24 (more than "... (6 characters more)").
    named.__qualname__ = "n" * 60 + "\0" * 5
    assert format_record(_recorded(named)).endswith("; top: " + "n" * 60 + "\\x00" * 5 + " 2")
    named.__qualname__ = "n" * 60 + "\0" * 6
    assert format_record(_recorded(named)).endswith(
        "; top: " + "n" * 60 + "... (6 characters more) 2"
    )
    # A class raised of 4-byte characters beside such a path (and five
    # causes of 4-byte names): the class is cut at 60, as a name is, not
    # at 200 (the line was 4,340 bytes).
    grin = "\U0001f600"
    record.attributes["error.type"] = grin * 224
    with_causes = _recorded(*(_named(f"{grin * 83}{n}") for n in range(5)))
    with_causes.attributes.update(record.attributes, **{"url.path": "/" + grin * 423})
    crowded = format_record(with_causes)
    assert f"(raised {grin * 60}... (164 characters more))" in crowded
    assert len(crowded.encode()) < 4096
    record.attributes["error.type"] = "x" * 225  # room for it: cut at 200
    assert "(raised " + "x" * 200 + "... (25 characters more))" in format_record(record)


def test_a_line_one_byte_short_of_what_a_pipe_writes_whole_is_kept():
    """The line and its newline up to PIPE_BUF (4096 bytes) are written
    whole: a line of 4,095 bytes keeps the class raised at 200 characters;
    one of 4,096 has it cut at 60, as a name is."""
    grin = "\U0001f600"
    # Every field at its longest, cut (but the class raised, 200 characters).
    record = _recorded(*(_named(f"{grin * 9999}{n}") for n in range(5)))
    record.attributes.update(
        {
            "http.request.method": grin * 10_000,
            "http.response.status_code": 500,
            "error.type": grin * 200,
        }
    )

    def line_with(path: str) -> str:
        record.attributes["url.path"] = path
        return format_record(record)

    # The path's first 400 characters shown, of 1 to 4 bytes each: the line
    # made 4,095 bytes long, and 4,096.
    def path(added: int) -> str:  # (bytes over a path of 1-byte characters)
        grins, rest = divmod(added, 3)
        shown = grin * grins + "\u00e9\u20ac"[rest - 1 : rest]
        return "/" + shown + "a" * (399 - len(shown)) + "a" * 99_600

    short = 4095 - len(line_with(path(0)).encode())
    kept, cut = line_with(path(short)), line_with(path(short + 1))
    assert (len(kept.encode()), f"(raised {grin * 200})" in kept) == (4095, True)
    assert f"(raised {grin * 60}... (140 characters more))" in cut
    assert len(cut.encode()) == 4096 - 140 * 4 + len("... (140 characters more)")


def _named(name: str):
    def function():
        pass

    function.__qualname__ = name
    return function


def test_the_class_a_request_raised_is_shown_with_its_module():
    """Named with its module first (as OpenTelemetry names it), the class
    itself was cut at 60 characters: (raised acme_platform.backend.apps....
    (34 characters more)). Cut at 200."""
    record = _recorded()
    deep = "acme_platform.backend.apps.payments.services.gateways.stripe.PaymentGatewayTimeoutError"
    record.attributes["error.type"] = deep
    assert format_record(record).startswith(f"BLOCK  (raised {deep}): 0 switches")
    record.attributes["error.type"] = "x" * 225
    assert format_record(record).startswith(
        "BLOCK  (raised " + "x" * 200 + "... (25 characters more)): 0 switches"
    )


def test_top_causes_past_max_events_say_they_name_only_those_kept():
    """With MAX_EVENTS 1, the second crossing is counted but not kept: the
    top named the first alone, as if it were all, and said nothing."""

    def first():
        pass

    def second():
        pass

    first.__qualname__, second.__qualname__ = "first", "second"
    line = format_record(_recorded(first, second, second, max_events=1))
    assert line.endswith(
        ": 6 switches, 6 hops, 0 loops, 0 threads; top: first 2 (2 events past MAX_EVENTS left out)"
    )


async def _nothing() -> None:
    return None


def test_the_figure_before_the_headers_is_of_switches_not_hops():
    """asyncio.run from sync code: two switches on one thread, no hop (every
    other line here had as many hops as switches)."""
    with recording() as record:
        asyncio.run(_nothing())
        record.mark_headers()
    assert format_record(record) == (
        "BLOCK : 2 switches (2 before headers), 0 hops, 1 loop, 0 threads; top: _nothing 2"
    )


def test_a_line_whose_events_were_all_left_out_says_the_top_names_none():
    with recording(max_events=0) as record:
        asyncio.run(_nothing())
    assert format_record(record) == (
        "BLOCK : 2 switches, 0 hops, 1 loop, 0 threads; top: none kept (2 events past "
        "MAX_EVENTS left out)"
    )
