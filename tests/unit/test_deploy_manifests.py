"""The Kubernetes manifests are valid resources and agree with the image and the config."""

from __future__ import annotations

import os
from pathlib import Path

import kubernetes_validate
import yaml

from gateway.config import load_config

MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "php-gateway.yaml"


def docs() -> list[dict[str, object]]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]


def test_manifests_validate_strictly() -> None:
    for doc in docs():
        kubernetes_validate.validate(doc, "1.30.0", strict=True)


def test_env_is_a_valid_configuration(tmp_path: Path) -> None:
    deployment = next(d for d in docs() if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]  # type: ignore[index]
    env = {e["name"]: e["value"] for e in container["env"]}
    config = load_config(["--document-root", str(tmp_path)], {**os.environ, **env})
    assert config.internal_addr is not None and config.internal_addr.port == 9090
    probes = {container["readinessProbe"]["httpGet"]["path"],
              container["livenessProbe"]["httpGet"]["path"]}
    assert probes == {"/ready", "/health"}
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]  # type: ignore[index]
    # the grace period also runs while preStop sleeps, before SIGTERM
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    # the supervisor kills a worker still draining 5 s after DRAIN_TIMEOUT_SECS, then exits
    assert grace >= int(pre_stop[1]) + config.drain_timeout_secs + 10
    # and the drain lets a request within REQUEST_TIMEOUT finish
    assert config.request_timeout is not None
    assert config.drain_timeout_secs >= config.request_timeout


def test_read_only_root_has_a_writable_tmp() -> None:
    deployment = next(d for d in docs() if d["kind"] == "Deployment")
    spec = deployment["spec"]["template"]["spec"]  # type: ignore[index]
    container = spec["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts.get("/tmp") in {v["name"] for v in spec["volumes"] if "emptyDir" in v}


def test_disruption_budget_and_autoscaler_target_the_deployment() -> None:
    by_kind = {d["kind"]: d for d in docs()}
    deployment = by_kind["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]  # type: ignore[index]
    pdb = by_kind["PodDisruptionBudget"]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()  # type: ignore[index]
    assert pdb["minAvailable"] < deployment["spec"]["replicas"]  # type: ignore[index,operator]
    hpa = by_kind["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",  # type: ignore[index]
                                     "name": deployment["metadata"]["name"]}  # type: ignore[index]
    assert hpa["minReplicas"] >= 2  # type: ignore[index]
    # CPU utilisation is measured against the container's request: it must have one
    container = deployment["spec"]["template"]["spec"]["containers"][0]  # type: ignore[index]
    assert container["resources"]["requests"]["cpu"]
