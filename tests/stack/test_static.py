"""Static checks of the compose stack: compose file, Dockerfiles, Prometheus config and rules,
Grafana provisioning and dashboards. Offline and fast: no Docker engine, no running services."""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.stack.dashboards import dashboard_files, panel_queries
from tests.stack.tools import REPO, require_tool, run

COMPOSE_FILE = REPO / "docker-compose.observability.yml"
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
GRAFANA_DIR = REPO / "grafana"
DOCKERFILES = [REPO / "Dockerfile", *sorted((REPO / "deploy").rglob("*Dockerfile"))]
PUBLISHED = {"app", "grafana", "prometheus", "loadtest"}

# The metric names of the service's contract (DESIGN §4): each must be on some dashboard.
CONTRACT_METRICS = [
    "http_server_request_duration_seconds",
    "http_server_active_requests",
    "db_client_connection_count",
    "db_client_connection_max",
    "db_client_connection_idle_max",
    "db_client_connection_pending_requests",
    "db_client_connection_timeouts_total",
    "db_client_connection_wait_time_seconds",
    "db_client_connection_use_time_seconds",
    "db_client_connection_create_time_seconds",
    "db_client_operation_duration_seconds",
    "db_replica_lag_seconds",
    "db_replica_available",
    "db_replica_fallbacks_total",
    "db_connect_attempts_total",
    "cache_requests_total",
    "cache_operation_duration_seconds",
    "cache_invalidations_total",
    "cache_circuit_open",
]


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose file as written (variables not interpolated)."""
    data: dict[str, Any] = load_yaml(COMPOSE_FILE)
    return data


@pytest.fixture(scope="module")
def resolved_compose() -> dict[str, Any]:
    """The compose file as Docker Compose itself resolves it, with no variables set."""
    docker_compose = require_tool("docker-compose")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    for name in ("BIND_ADDRESS", "POSTGRES_PASSWORD", "REDIS_PASSWORD", "APP_WORKERS"):
        env.pop(name, None)
    out = run([docker_compose, "--profile", "loadtest", "config", "--format", "json"], env=env)
    data: dict[str, Any] = json.loads(out)
    return data


def services(compose: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    yield from compose["services"].items()


# ------------------------------------------------------------------------------ compose


def test_compose_file_validates_against_the_compose_spec() -> None:
    check_jsonschema = require_tool("check-jsonschema")
    run([check_jsonschema, "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)])


def test_plain_docker_compose_uses_the_observability_file(
    resolved_compose: dict[str, Any], compose: dict[str, Any]
) -> None:
    """`.env` names the file, so `docker compose up` with no -f brings up this stack."""
    env_lines = (REPO / ".env").read_text(encoding="utf-8").splitlines()
    assert "COMPOSE_FILE=docker-compose.observability.yml" in env_lines
    assert set(resolved_compose["services"]) == set(compose["services"])


def test_every_image_is_pinned_to_a_version(compose: dict[str, Any]) -> None:
    for name, service in services(compose):
        image = service.get("image")
        assert image or "build" in service, f"{name} has neither image nor build"
        if image:
            assert re.fullmatch(r"[\w./-]+:[\w.-]+(@sha256:[0-9a-f]{64})?", image), (
                f"{name}: {image} has no tag"
            )
            assert not image.endswith(":latest"), f"{name}: {image} is not pinned"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_dockerfile_base_image_is_pinned(dockerfile: Path) -> None:
    stages: set[str] = set()
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        match = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if not match:
            continue
        image, stage = match.groups()
        if image not in stages:
            tag = image.split("@")[0].rpartition(":")[2]
            assert ":" in image, f"{image} has no tag"
            assert tag not in ("", "latest"), f"{image} is not pinned"
            assert re.search(r"\d", tag), f"{image}: the tag names no version"
        if stage:
            stages.add(stage)


def test_every_service_has_a_healthcheck_and_a_memory_limit(compose: dict[str, Any]) -> None:
    for name, service in services(compose):
        test = service.get("healthcheck", {}).get("test")
        assert test, f"{name} has no healthcheck"
        assert test != ["NONE"], f"{name} disables its healthcheck"
        limits = service.get("deploy", {}).get("resources", {}).get("limits", {})
        assert limits.get("memory") or service.get("mem_limit"), f"{name} has no memory limit"


def test_dependencies_wait_for_healthy_services(compose: dict[str, Any]) -> None:
    for name, service in services(compose):
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions"
        for dependency, spec in depends_on.items():
            assert dependency in compose["services"], f"{name} depends on unknown {dependency}"
            assert spec.get("condition") == "service_healthy", f"{name} -> {dependency}"
    app_dependencies = set(compose["services"]["app"]["depends_on"])
    assert {"postgres", "postgres-replica", "redis"} <= app_dependencies


def test_files_mounted_or_built_from_the_repository_exist(compose: dict[str, Any]) -> None:
    for name, service in services(compose):
        build = service.get("build")
        if build:
            context = REPO / (build if isinstance(build, str) else build["context"])
            assert context.is_dir(), f"{name}: build context {context} is missing"
            dockerfile = context / (
                "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            )
            assert dockerfile.is_file(), f"{name}: {dockerfile} is missing"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name} mounts missing {source}"


def test_the_load_test_runs_the_repository_locustfile(compose: dict[str, Any]) -> None:
    loadtest = compose["services"]["loadtest"]
    assert loadtest["profiles"] == ["loadtest"]
    command = loadtest["command"]
    assert command[command.index("--host") + 1] == "http://app:8000"
    locustfile = command[command.index("-f") + 1]
    for volume in loadtest["volumes"]:
        source, target = volume.split(":")[:2]
        if locustfile.startswith(target + "/"):
            on_host = REPO / source / locustfile.removeprefix(target + "/")
            assert on_host == REPO / "tests" / "load" / "locustfile.py"
            assert on_host.is_file(), f"{on_host} does not exist (the load test scenarios)"
            return
    pytest.fail(f"{locustfile} is not mounted from the repository")


def test_named_volumes_are_declared_and_used(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes", {}))
    used = {
        volume.split(":")[0]
        for _, service in services(compose)
        for volume in service.get("volumes", [])
        if not volume.startswith((".", "/"))
    }
    assert used == declared
    assert {"postgres-data", "postgres-replica-data", "prometheus-data", "grafana-data"} <= used


def test_only_the_ui_services_publish_ports_on_loopback_by_default(
    compose: dict[str, Any], resolved_compose: dict[str, Any]
) -> None:
    publishing = {name for name, service in services(compose) if service.get("ports")}
    assert publishing == PUBLISHED
    for name in publishing:
        for port in compose["services"][name]["ports"]:
            assert str(port).startswith("${BIND_ADDRESS:-127.0.0.1}:"), f"{name}: {port}"
        for port in resolved_compose["services"][name]["ports"]:
            assert port["host_ip"] == "127.0.0.1", f"{name}: {port}"


def test_passwords_come_from_the_environment(compose: dict[str, Any]) -> None:
    """Each password is `${VAR:?...}` or `${VAR:-dev-only-...}`, never a literal value."""
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    interpolations = re.findall(r"\$\{(\w*PASSWORD\w*)(:?[-?])?([^}]*)\}", text)
    assert {v for v, _, _ in interpolations} >= {
        "POSTGRES_PASSWORD",
        "POSTGRES_REPLICATION_PASSWORD",
        "REDIS_PASSWORD",
        "GRAFANA_ADMIN_PASSWORD",
    }
    for variable, operator, default in interpolations:
        assert operator in (":?", ":-"), f"${{{variable}}} needs :? or a :-dev-only- default"
        if operator == ":-":
            assert default.startswith("dev-only-"), f"{variable} defaults to {default!r}"
    for name, service in services(compose):
        for key, value in service.get("environment", {}).items():
            if "PASSWORD" in key or key == "REDISCLI_AUTH":
                assert str(value).startswith("${"), f"{name}: {key} is a literal"
    app_env = compose["services"]["app"]["environment"]
    for key in ("DATABASE_URL", "DATABASE_REPLICA_URLS", "REDIS_URL"):
        assert re.search(r":\$\{\w*PASSWORD[^}]*\}@", app_env[key]), key


def test_app_service_is_configured_by_the_contract_variables(
    compose: dict[str, Any], resolved_compose: dict[str, Any]
) -> None:
    app = compose["services"]["app"]
    env = resolved_compose["services"]["app"]["environment"]
    assert env["DATABASE_URL"].startswith("postgresql+asyncpg://users:")
    assert env["DATABASE_URL"].endswith("@postgres:5432/users")
    assert env["DATABASE_REPLICA_URLS"].endswith("@postgres-replica:5432/users")
    assert env["REDIS_URL"].startswith("redis://:")
    assert env["REDIS_URL"].endswith("@redis:6379/0")
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
    assert env["OTEL_SERVICE_NAME"] == "users"
    assert env["LOG_FORMAT"] == "json"
    assert app["read_only"] is True
    assert any(t.split(":")[0] == "/tmp" for t in app["tmpfs"])  # noqa: S108 (a tmpfs mount)


def test_another_database_is_one_environment_variable_away() -> None:
    docker_compose = require_tool("docker-compose")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
    env |= {"DATABASE_URL": "mysql+aiomysql://u:p@db:3306/users", "DATABASE_REPLICA_URLS": ""}
    app = json.loads(run([docker_compose, "config", "--format", "json"], env=env))["services"][
        "app"
    ]
    assert app["environment"]["DATABASE_URL"] == "mysql+aiomysql://u:p@db:3306/users"
    assert app["environment"]["DATABASE_REPLICA_URLS"] == ""


def test_redis_requires_the_password_the_app_uses(compose: dict[str, Any]) -> None:
    command = compose["services"]["redis"]["command"]
    password = command[command.index("--requirepass") + 1]
    assert password.startswith("${REDIS_PASSWORD")
    assert f":{password}@redis" in compose["services"]["app"]["environment"]["REDIS_URL"]


def test_replica_is_bootstrapped_from_the_primary_by_the_deploy_scripts(
    compose: dict[str, Any],
) -> None:
    primary = compose["services"]["postgres"]
    assert primary["image"].startswith("postgres:16.")
    settings = " ".join(primary["command"])
    for setting in ("wal_level=replica", "max_wal_senders=", "max_replication_slots="):
        assert setting in settings
    replica = compose["services"]["postgres-replica"]
    assert replica["image"] == primary["image"]
    entrypoint_script = replica["entrypoint"][-1]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in replica["volumes"]}
    script = (REPO / mounted[entrypoint_script]).read_text(encoding="utf-8")
    assert "pg_basebackup" in script
    assert "--write-recovery-conf" in script
    assert replica["environment"]["PRIMARY_HOST"] == "postgres"


def test_shell_scripts_pass_shellcheck() -> None:
    shellcheck = require_tool("shellcheck")
    scripts = sorted(str(p) for p in (REPO / "deploy").rglob("*.sh"))
    assert scripts
    run([shellcheck, "--shell=sh", *scripts])


# ------------------------------------------------------------------------------ Dockerfile


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_dockerfile_passes_hadolint(dockerfile: Path) -> None:
    hadolint = require_tool("hadolint")
    run([hadolint, str(dockerfile)])


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    text = dockerfile.read_text(encoding="utf-8").replace("\\\n", " ")
    pairs = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def test_service_image_is_built_from_the_lock_file_and_runs_unprivileged() -> None:
    steps = _instructions(REPO / "Dockerfile")
    froms = [rest for keyword, rest in steps if keyword == "FROM"]
    assert len(froms) >= 2, "multi-stage: a build stage and a slim runtime"
    assert re.match(r"python:3\.11\.\d+-slim", froms[-1])
    runs = " ".join(rest for keyword, rest in steps if keyword == "RUN")
    assert "uv sync --frozen --no-dev --extra postgresql --extra mysql" in runs
    user = next(rest for keyword, rest in reversed(steps) if keyword == "USER")
    uid = user.split(":")[0]
    assert uid.isdigit(), f"USER {user} must be numeric (runAsNonRoot can only check a uid)"
    assert int(uid) > 0, f"USER {user} must not be root"
    env = " ".join(rest for keyword, rest in steps if keyword == "ENV")
    assert "HOME=/tmp" in env
    assert "XDG_DATA_HOME=/tmp" in env


def test_service_image_entrypoint_is_exec_form_python_m_app() -> None:
    steps = dict(_instructions(REPO / "Dockerfile"))
    entrypoint = json.loads(steps["ENTRYPOINT"])
    assert entrypoint[:3] == ["python", "-m", "app"]
    assert entrypoint[entrypoint.index("--host") + 1] == "0.0.0.0"  # noqa: S104 (in a container)
    assert isinstance(json.loads(steps["CMD"]), list)
    assert "--workers" in json.loads(steps["CMD"])
    healthcheck = steps["HEALTHCHECK"]
    assert "/health/live" in healthcheck
    assert json.loads(healthcheck[healthcheck.index("[") :])[0] == "python"


def test_dockerignore_keeps_the_build_context_to_the_sources() -> None:
    lines = (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert lines[lines.index("*") :][:1] == ["*"]
    for needed in ("!pyproject.toml", "!uv.lock", "!app/", "!building_blocks/"):
        assert needed in lines


# ------------------------------------------------------------------------------ Prometheus


def test_prometheus_config_is_valid() -> None:
    promtool = require_tool("promtool")
    run([promtool, "check", "config", str(PROMETHEUS_DIR / "prometheus.yml")])


def test_alert_rule_unit_tests_pass() -> None:
    promtool = require_tool("promtool")
    run([promtool, "test", "rules", str(PROMETHEUS_DIR / "alerts_test.yml")])


def _alerts() -> list[dict[str, Any]]:
    groups = load_yaml(PROMETHEUS_DIR / "alerts.yml")["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    cases = [
        case
        for test in load_yaml(PROMETHEUS_DIR / "alerts_test.yml")["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    for alert in _alerts():
        name = alert["alert"]
        assert any(c["alertname"] == name and c["exp_alerts"] for c in cases), name
        assert any(c["alertname"] == name and not c["exp_alerts"] for c in cases), name


def test_every_alert_says_what_happened_and_what_to_do() -> None:
    names = set()
    for alert in _alerts():
        names.add(alert["alert"])
        assert alert["labels"]["severity"] in ("warning", "critical"), alert["alert"]
        assert alert["annotations"]["summary"].strip(), alert["alert"]
        assert len(alert["annotations"]["description"]) > 80, alert["alert"]
    assert {
        "DbPoolSaturated",
        "DbPoolTimeouts",
        "DbReplicaDown",
        "DbReplicaLagging",
        "DbConnectRetriesFailing",
        "CacheCircuitOpen",
        "CacheHitRatioCollapsed",
        "ApiHighErrorRatio",
        "ApiHighLatencyP99",
    } <= names


def test_prometheus_scrapes_the_app_and_keeps_exemplars(compose: dict[str, Any]) -> None:
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "users")
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for sc in job["static_configs"] for t in sc["targets"]]
    host, port = targets[0].split(":")
    assert host in compose["services"]
    assert f"--port {port}" in " ".join(compose["services"][host]["command"])
    prometheus = compose["services"]["prometheus"]
    assert "--enable-feature=exemplar-storage" in prometheus["command"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in prometheus["volumes"]}
    config_dir = Path(mounted["/etc/prometheus/prometheus.yml"]).parent
    for rule_file in config["rule_files"]:
        assert f"/etc/prometheus/{rule_file}" in mounted
        assert Path(mounted[f"/etc/prometheus/{rule_file}"]).parent == config_dir


# ------------------------------------------------------------------------------ Grafana


def _dashboards() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, json.loads(p.read_text(encoding="utf-8"))) for p in dashboard_files()]


def _datasource_uids() -> dict[str, str]:
    uids = {}
    for path in sorted((GRAFANA_DIR / "provisioning" / "datasources").glob("*.y*ml")):
        for source in load_yaml(path)["datasources"]:
            uids[source["uid"]] = source["type"]
    return uids


def _datasource_refs(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        ref = node.get("datasource")
        if isinstance(ref, dict):
            yield ref
        for value in node.values():
            yield from _datasource_refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _datasource_refs(item)


def test_four_dashboards_parse_with_unique_uids() -> None:
    dashboards = _dashboards()
    assert len(dashboards) == 4
    uids = [d["uid"] for _, d in dashboards]
    assert len(set(uids)) == len(uids)
    titles = [d["title"] for _, d in dashboards]
    assert len(set(titles)) == len(titles)
    for path, dashboard in dashboards:
        assert dashboard["schemaVersion"] >= 39, path.name
        assert dashboard.get("id") is None, f"{path.name}: a provisioned dashboard has no id"


def test_every_datasource_a_dashboard_uses_is_provisioned() -> None:
    provisioned = _datasource_uids()
    for path, dashboard in _dashboards():
        refs = list(_datasource_refs(dashboard))
        assert refs, path.name
        for ref in refs:
            if ref.get("uid") == "-- Grafana --":
                continue
            assert ref.get("uid") in provisioned, f"{path.name}: {ref}"
            assert provisioned[ref["uid"]] == ref["type"], f"{path.name}: {ref}"


def test_prometheus_exemplars_link_to_the_tempo_datasource() -> None:
    sources = {
        s["uid"]: s
        for path in (GRAFANA_DIR / "provisioning" / "datasources").glob("*.y*ml")
        for s in load_yaml(path)["datasources"]
    }
    assert sources["prometheus"]["type"] == "prometheus"
    assert sources["tempo"]["type"] == "tempo"
    destinations = sources["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert {d["datasourceUid"] for d in destinations} == {"tempo"}
    api = next(d for _, d in _dashboards() if d["uid"] == "users-api")
    latency = next(p for p in api["panels"] if p["title"].startswith("Latency"))
    assert all(t.get("exemplar") for t in latency["targets"])


def test_every_panel_has_a_description_and_a_query() -> None:
    for path, dashboard in _dashboards():
        for panel in dashboard["panels"]:
            assert len(panel.get("description", "")) > 40, f"{path.name}: {panel['title']}"
            assert "bad" in panel["description"].lower(), f"{path.name}: {panel['title']}"
            assert panel.get("targets"), f"{path.name}: {panel['title']}"


def test_template_variables_are_label_values_queries_with_all() -> None:
    for path, dashboard in _dashboards():
        variables = dashboard["templating"]["list"]
        assert variables, path.name
        for variable in variables:
            assert variable["type"] == "query"
            assert variable["definition"].startswith("label_values(")
            assert variable["query"] == variable["definition"]
            assert variable["includeAll"] is True
            assert variable["allValue"] == ".*"
            # Used as a regex, so "All" (.*) and multi-selection both work.
            exprs = " ".join(
                t["expr"] for p in dashboard["panels"] for t in p["targets"] if "expr" in t
            )
            assert f'=~"${variable["name"]}"' in exprs, f"{path.name}: ${variable['name']}"
            assert f'="${variable["name"]}"' not in exprs


def test_every_panel_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query (variables substituted) as a recording rule."""
    promtool = require_tool("promtool")
    queries = panel_queries()
    rules = {
        "groups": [
            {
                "name": "dashboard-queries",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": q.expr}
                    for i, q in enumerate(queries)
                ],
            }
        ]
    }
    rule_file = tmp_path / "queries.yml"
    rule_file.write_text(yaml.safe_dump(rules), encoding="utf-8")
    out = run([promtool, "check", "rules", str(rule_file)])
    assert f"{len(queries)} rules found" in out


def test_dashboards_show_every_metric_of_the_contract() -> None:
    exprs = " ".join(q.expr for q in panel_queries())
    missing = [m for m in CONTRACT_METRICS if not re.search(rf"\b{m}(_bucket|_count)?\b", exprs)]
    assert not missing


def test_grafana_loads_the_dashboards_compose_mounts(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    providers = [
        provider
        for path in (GRAFANA_DIR / "provisioning" / "dashboards").glob("*.y*ml")
        for provider in load_yaml(path)["providers"]
    ]
    for provider in providers:
        container_path = provider["options"]["path"]
        assert (REPO / mounted[container_path]).resolve() == GRAFANA_DIR / "dashboards"
    assert (REPO / mounted["/etc/grafana/provisioning"]).resolve() == GRAFANA_DIR / "provisioning"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    directory, _, name = home.rpartition("/")
    assert (REPO / mounted[directory] / name).is_file()


def test_compose_healthcheck_commands_name_real_endpoints(compose: dict[str, Any]) -> None:
    """The app's probe matches the image's (liveness, port 8000)."""
    probe = compose["services"]["app"]["healthcheck"]["test"]
    assert "http://127.0.0.1:8000/health/live" in shlex.join(probe)
