"""docker-compose.yml cannot run here (no Docker engine): check it against
what the code expects instead."""

from __future__ import annotations

import shlex
from urllib.parse import urlsplit

import pytest
import yaml

from switchtrace.django_app.conf import build_config

from ..conftest import EXAMPLE, ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_jaeger_v2_all_in_one_with_ui_and_both_otlp_ports():
    jaeger = SERVICES["jaeger"]
    image, _, tag = jaeger["image"].partition(":")
    assert image == "jaegertracing/jaeger"
    assert tag.split(".")[0] == "2"
    assert sorted(jaeger["ports"]) == ["16686:16686", "4317:4317", "4318:4318"]


@pytest.mark.parametrize(
    ("name", "server", "module", "protocol", "port"),
    [
        ("asgi", "uvicorn", "project.asgi:application", "grpc", 4317),
        ("wsgi", "gunicorn", "project.wsgi:application", "http/protobuf", 4318),
    ],
)
def test_the_example_project_served_twice_exports_to_jaeger(name, server, module, protocol, port):
    service = SERVICES[name]
    environment = service["environment"]
    config = build_config({"ENABLED": True}, environ=environment)
    assert config.problems == ()
    assert config.export.exporter == "otlp"
    assert config.export.protocol == protocol
    assert config.export.service_name == f"example-{name}"
    endpoint = urlsplit(config.export.endpoint)
    assert (endpoint.hostname, endpoint.port) == ("jaeger", port)
    assert service["depends_on"] == ["jaeger"]
    assert environment["SWITCHTRACE_EXAMPLE_MIDDLEWARE"] in ("shipped", "sync-only", "none")
    # The working directory is the example project, and the command serves it.
    assert service["working_dir"] == "/src/examples/project"
    assert service["volumes"] == ["./:/src"]
    script = shlex.split(shlex.split(service["command"])[2])
    steps, step = [], []
    for word in script:
        if word == "&&":
            steps.append(step)
            step = []
        else:
            step.append(word)
    remove, mkdir, copy, install, words = [*steps, step]
    # Installed from a copy of what the build needs, not built inside the
    # checkout; afresh when the container starts again.
    assert remove == ["rm", "-rf", "/tmp/switchtrace"]
    assert mkdir == ["mkdir", "/tmp/switchtrace"]
    assert copy == [
        "cp",
        "-r",
        "/src/pyproject.toml",
        "/src/README.md",
        "/src/src",
        "/src/examples",
        "/tmp/switchtrace",
    ]
    pyproject = (ROOT / "pyproject.toml").read_text().splitlines()
    assert 'readme = "README.md"' in pyproject  # (tomllib: Python 3.11+)
    # Every directory the packages are mapped from is copied: without
    # examples/project (the wheel's switchtrace.example_project) pip said
    # "package directory 'examples/project' does not exist".
    assert '"" = "src"' in pyproject
    assert '"switchtrace.example_project" = "examples/project"' in pyproject
    assert install == ["pip", "install", "--no-cache-dir", "/tmp/switchtrace", server]
    assert words[:2] == [server, module]
    package, _, _attr = module.partition(":")
    assert (EXAMPLE / (package.replace(".", "/") + ".py")).exists()
    published, container = service["ports"][0].split(":")
    assert published == container
    if server == "uvicorn":
        assert words[words.index("--port") + 1] == container
        # Its graceful shutdown then runs the exit hooks (tests/e2e/test_servers.py).
        assert service["stop_signal"] == "SIGINT"
    else:
        assert words[words.index("--bind") + 1] == f"0.0.0.0:{container}"
