"""A module (of SHOW_HEADERS, of a MIDDLEWARE entry) whose import fails with
something else than an ImportError."""

raise RuntimeError("a bug in the module")
