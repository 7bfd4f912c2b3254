"""A module (of SHOW_HEADERS, of a MIDDLEWARE entry) whose import raises an
exception that cannot be shown: its ``__str__`` raises."""


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no message")


raise Unprintable
