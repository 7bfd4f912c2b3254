"""switchtrace: a runtime tracing profiler for Django's sync/async boundary.

- :mod:`switchtrace.tracer` patches asgiref, asyncio and threading and keeps
  a per-request record of every context switch, thread hop, event loop and
  thread created.
- :mod:`switchtrace.django_app` enables it through Django settings and puts
  the per-request figures on the response.
- :mod:`switchtrace.exporters` turns finished records into OpenTelemetry spans.
"""

__version__ = "0.1.0"
