"""A SHOW_HEADERS module whose import fails with something else than an ImportError."""

raise RuntimeError("a bug in the module")
