"""The live test's Prometheus config differs from the repository's only where it says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.stack.prometheus_config import PROMETHEUS_DIR, write_live_config
from tests.stack.tools import require_tool, run

TARGETS = {"app:8000": "127.0.0.1:18000", "localhost:9090": "127.0.0.1:19090"}


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _rules(document: Any) -> list[dict[str, Any]]:
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_targets_are_rewritten_and_everything_else_of_the_jobs_is_kept(tmp_path: Path) -> None:
    live = _load(write_live_config(tmp_path, targets=TARGETS))
    original = _load(PROMETHEUS_DIR / "prometheus.yml")
    for job in original["scrape_configs"]:
        for static in job["static_configs"]:
            static["targets"] = [TARGETS[t] for t in static["targets"]]
    assert live["scrape_configs"] == original["scrape_configs"]
    assert live["rule_files"] == original["rule_files"]
    assert live["global"]["scrape_interval"] == live["global"]["evaluation_interval"] == "1s"


def test_a_target_without_a_live_address_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="app:8000"):
        write_live_config(tmp_path, targets={"localhost:9090": "127.0.0.1:19090"})


def test_the_rule_copy_changes_only_nonzero_for_durations(tmp_path: Path) -> None:
    write_live_config(tmp_path, targets=TARGETS, alert_for="3s")
    original = _rules(_load(PROMETHEUS_DIR / "alerts.yml"))
    live = _rules(_load(tmp_path / "alerts.yml"))
    assert [{k: v for k, v in r.items() if k != "for"} for r in live] == [
        {k: v for k, v in r.items() if k != "for"} for r in original
    ]
    for before, after in zip(original, live, strict=True):
        kept = before.get("for") in (None, "0m")
        assert after.get("for") == (before.get("for") if kept else "3s")


def test_promtool_accepts_the_rewritten_config_and_rules(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    config = write_live_config(tmp_path, targets=TARGETS)
    run([promtool, "check", "config", str(config)], cwd=tmp_path)
