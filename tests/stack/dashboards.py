"""Every panel query of every Grafana dashboard, with template variables substituted.

The static tests check these expressions parse as PromQL; the live stack test runs each one
against Prometheus after load and expects data. Substitution follows Grafana's: a variable
set to "All" becomes its ``allValue`` (``.*`` here, so ``=~"$pool"`` matches every pool),
and the interval macros become fixed durations.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

__all__ = [
    "DASHBOARDS_DIR",
    "GRAFANA_MACROS",
    "PanelQuery",
    "dashboard_files",
    "panel_queries",
    "substitute",
]

DASHBOARDS_DIR = Path(__file__).resolve().parents[2] / "grafana" / "dashboards"

# Grafana's built-in interval variables, as fixed durations that suit a 15 s scrape interval
# (a rate window must hold at least two samples: 4 x scrape interval is Grafana's own rule).
GRAFANA_MACROS: Mapping[str, str] = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
}

# $var, ${var}, ${var:format} and the deprecated [[var]].
_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)")


class PanelQuery(NamedTuple):
    dashboard: str
    panel: str
    expr: str


def dashboard_files(directory: Path = DASHBOARDS_DIR) -> list[Path]:
    return sorted(directory.glob("*.json"))


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Replace every known variable in ``expr``; an unknown one raises ``KeyError``."""

    def replace(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group is not None)
        if name in values:
            return values[name]
        if name in GRAFANA_MACROS:
            return GRAFANA_MACROS[name]
        raise KeyError(f"unknown template variable ${name} in {expr!r}")

    return _VARIABLE.sub(replace, expr)


def _variable_values(dashboard: Mapping[str, Any]) -> dict[str, str]:
    """Each template variable at "All" (its allValue, else ``.*``), else its current value."""
    values: dict[str, str] = {}
    for variable in dashboard.get("templating", {}).get("list", []):
        name = variable["name"]
        if variable.get("includeAll"):
            values[name] = variable.get("allValue") or ".*"
        else:
            current = variable.get("current", {}).get("value", "")
            values[name] = current[0] if isinstance(current, list) and current else str(current)
    return values


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        # Rows (collapsed ones keep their panels inside).
        yield from _panels(panel.get("panels", []))


def panel_queries(
    directory: Path = DASHBOARDS_DIR, overrides: Mapping[str, str] | None = None
) -> list[PanelQuery]:
    """(dashboard title, panel title, expression) for every visible query of every panel.

    ``overrides`` sets template variables to other values than "All" (e.g. one pool).
    """
    queries: list[PanelQuery] = []
    for path in dashboard_files(directory):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        values = {**_variable_values(dashboard), **(overrides or {})}
        for panel in _panels(dashboard.get("panels", [])):
            for target in panel.get("targets", []):
                expr = target.get("expr")
                if not expr or target.get("hide"):
                    continue
                queries.append(
                    PanelQuery(dashboard["title"], panel["title"], substitute(expr, values))
                )
    return queries
