"""The panel-query extractor the live stack test relies on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.stack.dashboards import dashboard_files, panel_queries, substitute


def _write_dashboard(directory: Path) -> None:
    dashboard = {
        "uid": "d1",
        "title": "Pools",
        "templating": {
            "list": [
                {"name": "pool", "type": "query", "includeAll": True, "allValue": ".*"},
                {"name": "job", "type": "custom", "current": {"value": "users"}},
            ]
        },
        "panels": [
            {
                "title": "Used",
                "targets": [
                    {"expr": 'sum(rate(a{pool=~"$pool", job="${job}"}[$__rate_interval]))'},
                    {"expr": "hidden_metric", "hide": True},
                    {"refId": "B"},
                ],
            },
            {
                "title": "A collapsed row",
                "type": "row",
                "panels": [{"title": "Inside", "targets": [{"expr": 'b{pool=~"[[pool]]"}'}]}],
            },
        ],
    }
    (directory / "pools.json").write_text(json.dumps(dashboard), encoding="utf-8")


def test_all_variables_become_their_all_value_and_macros_fixed_durations(tmp_path: Path) -> None:
    _write_dashboard(tmp_path)
    assert panel_queries(tmp_path) == [
        ("Pools", "Used", 'sum(rate(a{pool=~".*", job="users"}[1m]))'),
        ("Pools", "Inside", 'b{pool=~".*"}'),
    ]


def test_overrides_select_one_value_of_a_variable(tmp_path: Path) -> None:
    _write_dashboard(tmp_path)
    queries = panel_queries(tmp_path, overrides={"pool": "primary"})
    assert [q.expr for q in queries][1] == 'b{pool=~"primary"}'


def test_an_unknown_variable_is_an_error_not_a_silent_literal() -> None:
    with pytest.raises(KeyError, match=r"\$route"):
        substitute('rate(x{route=~"$route"}[5m])', {"pool": ".*"})


def test_the_repository_dashboards_yield_every_target_with_nothing_left_to_substitute() -> None:
    targets = sum(
        len([t for p in json.loads(f.read_text())["panels"] for t in p["targets"] if "expr" in t])
        for f in dashboard_files()
    )
    queries = panel_queries()
    assert len(queries) == targets > 0
    assert not [q for q in queries if "$" in q.expr or "[[" in q.expr]
    assert len({q.dashboard for q in queries}) == 4
