"""The repository's Prometheus config and alert rules, rewritten for the live stack test.

What changes, and nothing else:

- target addresses: the compose service names (``app:8000``, ``localhost:9090``) become the
  loopback ports of the natively started processes;
- scrape and evaluation intervals: 1 s instead of 15 s, so a rate over the dashboards'
  ``$__rate_interval`` (1 m) has samples within seconds of the load;
- in a copy of each rule file, every non-zero ``for:`` becomes a few seconds, so an alert
  fires within the test's budget. Expressions, labels and annotations stay as written;
  the ``for:`` durations themselves are proven by the promtool unit tests
  (``deploy/prometheus/alerts_test.yml``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = ["PROMETHEUS_DIR", "write_live_config"]

PROMETHEUS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"

_ZERO_DURATION = re.compile(r"(0+(ms|[smhdwy]))+|0")


def write_live_config(
    directory: Path,
    *,
    targets: Mapping[str, str],
    interval: str = "1s",
    alert_for: str = "3s",
    source: Path = PROMETHEUS_DIR / "prometheus.yml",
) -> Path:
    """Write the rewritten config (and its rule files) into ``directory``; its path.

    ``targets`` maps each address of the repository's config to the address to scrape
    instead; an address it does not map is an error, so a target added to the repository
    file cannot be silently left pointing at a compose host name.
    """
    config: dict[str, Any] = yaml.safe_load(source.read_text(encoding="utf-8"))
    config["global"].update(
        scrape_interval=interval, evaluation_interval=interval, scrape_timeout=interval
    )
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            unknown = [t for t in static["targets"] if t not in targets]
            if unknown:
                raise KeyError(f"no live address for target(s) {unknown} of job {job['job_name']}")
            static["targets"] = [targets[t] for t in static["targets"]]
    for name in config.get("rule_files", []):
        rules: dict[str, Any] = yaml.safe_load((source.parent / name).read_text(encoding="utf-8"))
        for group in rules["groups"]:
            for rule in group["rules"]:
                if "for" in rule and not _ZERO_DURATION.fullmatch(str(rule["for"])):
                    rule["for"] = alert_for
        (directory / name).write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
    path = directory / source.name
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path
