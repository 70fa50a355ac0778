"""Import rules import-linter cannot express, and the small pure parts of telemetry."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from app.settings import Settings
from building_blocks.telemetry import parse_statement, redact

ROOT = Path(__file__).resolve().parents[2]
SDK_MODULE = ROOT / "building_blocks" / "telemetry" / "setup.py"
SDK_PREFIXES = ("opentelemetry.sdk", "opentelemetry.exporter")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_only_the_telemetry_setup_module_imports_the_opentelemetry_sdk() -> None:
    """import-linter cannot forbid a subpackage of an external package, so: the AST."""
    offenders = {
        str(path.relative_to(ROOT)): sorted(n for n in _imports(path) if n.startswith(SDK_PREFIXES))
        for package in ("building_blocks", "app")
        for path in (ROOT / package).rglob("*.py")
        if path != SDK_MODULE
    }
    assert {k: v for k, v in offenders.items() if v} == {}
    assert any(n.startswith("opentelemetry.sdk") for n in _imports(SDK_MODULE))


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("SELECT users.id, users.email \nFROM users \nWHERE users.id = $1", ("SELECT", "users")),
        ("INSERT INTO users (id, email) VALUES (?, ?)", ("INSERT", "users")),
        ('UPDATE "users" SET version=%s WHERE id = %s', ("UPDATE", "users")),
        ("DELETE FROM public.users WHERE id = :id", ("DELETE", "users")),
        ("select count(*) from `users`", ("SELECT", "users")),
        ("BEGIN IMMEDIATE", ("BEGIN", "")),
        ("SELECT 1", ("SELECT", "")),
        ("/* comment */ SELECT * FROM [dbo].[users]", ("SELECT", "users")),
    ],
)
def test_statements_are_labelled_with_their_operation_and_first_table(
    statement: str, expected: tuple[str, str]
) -> None:
    assert parse_statement(statement) == expected


@pytest.mark.parametrize(
    "text",
    [
        "could not connect to postgresql+asyncpg://app:hunter2@db:5432/users",
        "redis://:hunter2@cache:6379/0 refused",
        "DSN: host=db user=app password=hunter2 dbname=users",
        "connect(password='hunter2', user='app')",
        "PASSWORD=hunter2 rejected",  # the pre-check ignores case, as the pattern does
        "Passwd: hunter2",
    ],
)
def test_redaction_masks_passwords_in_urls_and_key_value_pairs(text: str) -> None:
    redacted = redact(text)
    assert "hunter2" not in redacted
    assert "***" in redacted


def test_redaction_leaves_ordinary_text_alone() -> None:
    line = "GET /api/v1/users/{user_id} 200 1.2ms see https://example.com/docs"
    assert redact(line) == line


def test_tracing_follows_the_standard_otel_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
                 "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "users-test")
    quiet = Settings.from_env().tracing()
    assert (quiet.enabled, quiet.exporter, quiet.service_name) == (True, "none", "users-test")

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert Settings.from_env().tracing().exporter == "otlp"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    assert Settings.from_env().tracing().protocol == "grpc"
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console,otlp")
    assert Settings.from_env().tracing().exporter == "console"
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert Settings.from_env().tracing().enabled is False
