"""The Kubernetes manifests: every overlay renders, validates strictly (built-in kinds against
Kubernetes' schemas, operator kinds against the vendored CRD subsets), and its monitoring is
generated from the same files as the compose stack's. Offline: no cluster."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from app.__main__ import GRACEFUL_SHUTDOWN_SECONDS
from tests.stack.tools import REPO, require_tool, run

K8S = REPO / "deploy" / "k8s"
OVERLAYS = sorted(p.parent for p in (K8S / "overlays").glob("*/kustomization.yaml"))
CRDS = K8S / "crds"
# The oldest Kubernetes the manifests claim (preStop `sleep` needs 1.30+), and the newest
# the validator knows.
KUBERNETES_VERSIONS = ["1.31", "1.37"]


def _ids(path: Path) -> str:
    return path.name


@pytest.fixture(scope="module", params=OVERLAYS, ids=_ids)
def overlay(request: pytest.FixtureRequest) -> Path:
    path: Path = request.param
    return path


@pytest.fixture(scope="module")
def rendered(overlay: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`kubectl kustomize` output of the overlay, as a file."""
    kubectl = require_tool("kubectl")
    out = run([kubectl, "kustomize", str(overlay)])
    path = tmp_path_factory.mktemp(overlay.name) / "rendered.yaml"
    path.write_text(out, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def objects(rendered: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(rendered.read_text(encoding="utf-8")) if d]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


def crd_schemas() -> dict[tuple[str, str], Draft202012Validator]:
    common = yaml.safe_load((CRDS / "common.defs.yaml").read_text(encoding="utf-8"))
    registry: Registry[Any] = Registry().with_resource(
        "common", DRAFT202012.create_resource(common)
    )
    validators = {}
    for path in sorted(CRDS.glob("*_*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **doc["schema"]}
        Draft202012Validator.check_schema(schema)
        validators[(doc["apiVersion"], doc["kind"])] = Draft202012Validator(
            schema, registry=registry
        )
    return validators


# ------------------------------------------------------------------------------ validation


def test_there_is_a_dev_and_a_prod_overlay() -> None:
    assert {p.name for p in OVERLAYS} >= {"dev", "prod"}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_rendered_objects_validate_strictly_and_none_lacks_a_schema(
    rendered: Path, objects: list[dict[str, Any]], version: str
) -> None:
    validator = require_tool("kubernetes-validate")
    result = subprocess.run(
        [validator, "--strict", "--kubernetes-version", version, str(rendered)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "ERROR" not in output, output
    without_schema = set(
        re.findall(r"Couldn't find schema for kind (\w+) with api version (\S+)", output)
    )
    vendored = {(kind, api) for api, kind in crd_schemas()}
    assert without_schema <= vendored, (
        f"no schema for {sorted(without_schema - vendored)}: vendor one under deploy/k8s/crds/"
    )
    # Every object was either validated by kubernetes-validate or is a vendored CRD kind.
    validated = output.count(" passed for resource ")
    custom = [o for o in objects if (o["kind"], o["apiVersion"]) in vendored]
    assert validated + len(custom) == len(objects), output


def test_custom_resources_match_the_operators_crd_schemas(objects: list[dict[str, Any]]) -> None:
    validators = crd_schemas()
    custom = [o for o in objects if (o["apiVersion"], o["kind"]) in validators]
    assert {o["kind"] for o in custom} == {"Cluster", "Redis", "ServiceMonitor", "PrometheusRule"}
    for obj in custom:
        errors = sorted(
            validators[(obj["apiVersion"], obj["kind"])].iter_errors(obj), key=lambda e: e.path
        )
        assert not errors, [
            f"{obj['kind']}/{obj['metadata']['name']}: {'.'.join(map(str, e.path))}: {e.message}"
            for e in errors
        ]


def test_the_crd_schemas_reject_a_field_the_operator_does_not_have(
    objects: list[dict[str, Any]],
) -> None:
    cluster = dict(one(objects, "Cluster"))
    cluster["spec"] = {**cluster["spec"], "instancez": 3}
    validator = crd_schemas()[("postgresql.cnpg.io/v1", "Cluster")]
    assert any("instancez" in e.message for e in validator.iter_errors(cluster))


# ------------------------------------------------------------------------------ one source


def test_prometheus_rule_file_is_up_to_date_with_the_compose_alert_rules() -> None:
    run([sys.executable, str(K8S / "generate.py"), "--check"])


def test_prometheus_rule_carries_exactly_the_compose_alert_groups(
    objects: list[dict[str, Any]],
) -> None:
    rule = one(objects, "PrometheusRule")
    alerts = yaml.safe_load((REPO / "deploy/prometheus/alerts.yml").read_text(encoding="utf-8"))
    assert rule["spec"]["groups"] == alerts["groups"]


def test_the_generator_check_fails_when_the_alert_rules_change(tmp_path: Path) -> None:
    alerts = tmp_path / "alerts.yml"
    text = (REPO / "deploy/prometheus/alerts.yml").read_text(encoding="utf-8")
    alerts.write_text(text.replace("for: 5m", "for: 7m", 1), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(K8S / "generate.py"), "--check", "--alerts", str(alerts)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "out of date" in result.stderr


def test_dashboard_configmaps_hold_the_compose_dashboards_byte_for_byte(
    objects: list[dict[str, Any]],
) -> None:
    files = {
        p.name: p.read_text(encoding="utf-8") for p in (REPO / "grafana/dashboards").glob("*.json")
    }
    seen: dict[str, str] = {}
    for obj in objects:
        if (
            obj["kind"] == "ConfigMap"
            and obj["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
        ):
            for key, value in obj["data"].items():
                assert key not in seen, f"{key} in two ConfigMaps"
                seen[key] = value
    assert seen == files


# ------------------------------------------------------------------------------ the app


def test_app_pods_probe_health_and_run_unprivileged_read_only(
    objects: list[dict[str, Any]],
) -> None:
    pod = one(objects, "Deployment", "users")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    tmp_volumes = {m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/tmp"}  # noqa: S108
    assert tmp_volumes
    assert all("emptyDir" in v for v in pod["volumes"] if v["name"] in tmp_volumes)
    assert container["resources"]["requests"]["cpu"]
    assert container["resources"]["limits"]["memory"]
    assert pod["topologySpreadConstraints"]


def test_termination_grace_covers_the_pre_stop_sleep_and_the_app_drain(
    objects: list[dict[str, Any]],
) -> None:
    pod = one(objects, "Deployment", "users")["spec"]["template"]["spec"]
    pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > pre_stop + GRACEFUL_SHUTDOWN_SECONDS


def test_database_urls_point_at_the_cluster_read_write_and_read_only_services(
    objects: list[dict[str, Any]],
) -> None:
    cluster = one(objects, "Cluster")
    assert cluster["spec"]["instances"] == 3
    name = cluster["metadata"]["name"]
    env = {
        e["name"]: e
        for e in one(objects, "Deployment", "users")["spec"]["template"]["spec"]["containers"][0][
            "env"
        ]
    }
    assert env["DATABASE_URL"]["value"].startswith("postgresql+asyncpg://")
    assert f"@{name}-rw:5432/" in env["DATABASE_URL"]["value"]
    assert f"@{name}-ro:5432/" in env["DATABASE_REPLICA_URLS"]["value"]
    # The credentials are the ones the operator generates for the database owner.
    for variable in ("DB_USER", "DB_PASSWORD"):
        assert env[variable]["valueFrom"]["secretKeyRef"]["name"] == f"{name}-app"
    assert cluster["spec"]["bootstrap"]["initdb"]["database"] in env["DATABASE_URL"]["value"]


def test_redis_url_points_at_the_operator_redis_with_its_password(
    objects: list[dict[str, Any]],
) -> None:
    redis = one(objects, "Redis")
    env = {
        e["name"]: e
        for e in one(objects, "Deployment", "users")["spec"]["template"]["spec"]["containers"][0][
            "env"
        ]
    }
    assert f"@{redis['metadata']['name']}:6379/" in env["REDIS_URL"]["value"]
    secret = redis["spec"]["kubernetesConfig"]["redisSecret"]
    ref = env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == (secret["name"], secret["key"])
    config = one(objects, "ConfigMap", redis["spec"]["redisConfig"]["additionalRedisConfig"])
    assert "maxmemory-policy" in config["data"]["redis-additional.conf"]


def test_no_secret_value_is_rendered_or_committed(objects: list[dict[str, Any]]) -> None:
    assert not [o for o in objects if o["kind"] == "Secret"]
    committed = [p for p in K8S.rglob("*") if p.is_file() and re.search(r"secret|\.env$", p.name)]
    assert [p.name for p in committed if not p.name.endswith(".example")] in ([], ["config.env"])
    config = (K8S / "base" / "config.env").read_text(encoding="utf-8")
    assert not re.search(r"PASSWORD|SECRET|://[^/]*:[^/]*@", config)


def test_config_comes_from_the_generated_configmap(objects: list[dict[str, Any]]) -> None:
    container = one(objects, "Deployment", "users")["spec"]["template"]["spec"]["containers"][0]
    (source,) = container["envFrom"]
    config = one(objects, "ConfigMap", source["configMapRef"]["name"])
    assert config["metadata"]["name"].startswith("users-config-")  # hashed: edits roll pods
    assert config["data"]["LOG_FORMAT"] == "json"


def test_service_hpa_pdb_and_servicemonitor_select_the_app_pods(
    objects: list[dict[str, Any]],
) -> None:
    deployment = one(objects, "Deployment", "users")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = one(objects, "Service", "users")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    hpa = one(objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "users",
    }
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    monitor = one(objects, "ServiceMonitor")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in port_names
        assert endpoint["path"] == "/metrics"


def test_connections_at_max_scale_fit_under_max_connections(
    objects: list[dict[str, Any]],
) -> None:
    """(maxReplicas + rolling-update surge) x (pool size + overflow) + headroom fits under
    PostgreSQL's max_connections, on the primary and on each standby (same setting)."""
    hpa = one(objects, "HorizontalPodAutoscaler")
    deployment = one(objects, "Deployment", "users")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    config = one(objects, "ConfigMap", container["envFrom"][0]["configMapRef"]["name"])
    workers = int(container["args"][container["args"].index("--workers") + 1])
    per_pod = (
        int(config["data"]["DB_POOL_SIZE"]) + int(config["data"]["DB_MAX_OVERFLOW"])
    ) * workers
    surge = deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
    extra = (
        math.ceil(hpa["spec"]["maxReplicas"] * int(surge.rstrip("%")) / 100)
        if isinstance(surge, str)
        else int(surge)
    )
    max_pods = hpa["spec"]["maxReplicas"] + extra
    parameters = one(objects, "Cluster")["spec"]["postgresql"]["parameters"]
    headroom = 20  # superuser_reserved_connections, the operator, replication, a psql or two
    assert max_pods * per_pod + headroom <= int(parameters["max_connections"])


def test_images_are_pinned(objects: list[dict[str, Any]]) -> None:
    images = [
        c["image"]
        for o in objects
        if o["kind"] == "Deployment"
        for c in o["spec"]["template"]["spec"]["containers"]
    ]
    images.append(one(objects, "Cluster")["spec"]["imageName"])
    redis = one(objects, "Redis")["spec"]
    images += [redis["kubernetesConfig"]["image"], redis["redisExporter"]["image"]]
    for image in images:
        assert re.search(r":[\w.-]*\d[\w.-]*$|@sha256:[0-9a-f]{64}$", image), image
        assert not image.endswith(":latest"), image
