"""The shipped deployment files: the image holds every server package, the compose stack has the
topology the README describes, and no secret is set to an empty string."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_the_image_copies_every_package_the_server_installs() -> None:
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    included = {name.rstrip("*") for name in packages["packages"]["find"]["include"]}
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in included:
        assert f"COPY {package} ./{package}" in dockerfile, package


def test_the_compose_stack_is_one_origin_with_a_tagged_image_and_no_empty_secret() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "ledger-a", "ledger-b", "authjs", "gateway", "books"} <= set(services)
    for name in ("ledger-a", "ledger-b"):
        ledger = services[name]
        assert ledger["image"].split(":")[1], "the ledger image has a version tag"
        for variable, value in ledger["environment"].items():
            if "SECRET" in variable:
                assert value is None or value.startswith("${"), (variable, value)
    assert services["ledger-a"]["ports"] == ["127.0.0.1:8000:8000"]
    assert services["gateway"]["ports"] == ["8080:80"]
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "server authjs:3000;" in conf and "location /api/auth/" in conf


def test_the_dashboard_and_prometheus_read_metrics_the_service_has() -> None:
    import json
    import re

    from prometheus_client import REGISTRY

    from infra import metrics

    assert metrics.VERIFICATIONS  # the service's metrics are registered
    names = {
        family.name + suffix
        for family in REGISTRY.collect()
        for suffix in ("", "_total", "_bucket")
    }
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "anthra-key-ledger.json").read_text())
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"anthra_[a-z_]+", target["expr"])
    }
    assert used and used <= names, used - names
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    port = compose["services"]["ledger-a"]["environment"]["ANTHRA_METRICS_PORT"]
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = scrape["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == [f"ledger-a:{port}", f"ledger-b:{port}"]
