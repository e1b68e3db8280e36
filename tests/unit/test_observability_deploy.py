"""The monitoring that ships with php-gateway: Prometheus configuration and alerts checked
by promtool (Debian's prometheus package), Grafana provisioning that points at them, and
docker-compose.yml wiring the three together. That every metric the dashboard and the
alerts query is served by a live /metrics is tested end to end
(tests/e2e/test_observability_e2e.py)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy" / "prometheus"
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "php-gateway.json"


def promtool(*args: str) -> str:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is not installed (scripts/install-system-deps.sh installs "
                    "Debian's prometheus package)")
    out = subprocess.run([tool, *args], cwd=PROMETHEUS, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout + out.stderr


def test_prometheus_config_and_rules_pass_promtool() -> None:
    assert "SUCCESS" in promtool("check", "config", "prometheus.yml")
    assert "SUCCESS: 6 rules found" in promtool("check", "rules", "alerts.yml")


def test_alerts_fire_on_what_they_describe() -> None:
    assert "SUCCESS" in promtool("test", "rules", "alerts_test.yml")


def compose() -> dict[str, dict[str, object]]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]  # type: ignore[no-any-return]


def test_compose_scrapes_the_gateways_internal_port() -> None:
    services = compose()
    internal_port = str(services["gateway"]["environment"]["INTERNAL_ADDR"]).rsplit(":", 1)[1]  # type: ignore[index]
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == [f"gateway:{internal_port}"]
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:  # type: ignore[attr-defined]
            source = volume.split(":")[0]
            assert (REPO / source).exists(), f"{name} mounts {source}, which is not in the repo"
    mounts = dict(v.split(":")[:2] for v in services["grafana"]["volumes"])  # type: ignore[attr-defined]
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" /
                               "php-gateway.yml").read_text())["providers"][0]
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    # published on loopback only, beside the gateway's own 9090
    assert all(p.startswith("127.0.0.1:") for n in ("prometheus", "grafana")
               for p in services[n]["ports"])  # type: ignore[attr-defined]


def test_dashboard_uses_the_provisioned_datasource() -> None:
    [source] = yaml.safe_load((GRAFANA / "provisioning" / "datasources" /
                               "prometheus.yml").read_text())["datasources"]
    assert source["url"] == "http://prometheus:9090"  # the compose service, inside its network
    dashboard = json.loads(DASHBOARD.read_text())
    titles = [p["title"] for p in dashboard["panels"]]
    for wanted in ("Requests per second by status", "Latency percentiles",
                   "PHP threads: busy vs total", "PHP queue: depth and wait", "Errors",
                   "Refused: 429 rate limit and 503 overload", "Memory"):
        assert any(t.startswith(wanted) for t in titles), wanted
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == source["uid"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == source["uid"]
            assert re.search(r"\bphp_gateway_\w+", target["expr"]), target["expr"]


def queried_metrics() -> set[str]:
    """Every php_gateway_* series name the dashboard and the alerts query."""
    exprs = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"]
             for t in p["targets"]]
    for group in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]:
        exprs += [rule["expr"] for rule in group["rules"]]
    return {m for e in exprs for m in re.findall(r"\bphp_gateway_\w+", e)}


def test_queried_metrics_follow_the_naming_rules() -> None:
    names = queried_metrics()
    assert "php_gateway_request_duration_seconds_bucket" in names
    for name in names:
        assert re.fullmatch(r"php_gateway_[a-z0-9_]+", name)
