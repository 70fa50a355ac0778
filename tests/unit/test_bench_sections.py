"""`bench.instructions` keeps its section of bench/RESULTS.md across both harnesses."""

from __future__ import annotations

from bench.instructions import BEGIN, END, carry_section, replace_section


def test_a_section_is_added_then_replaced_in_place() -> None:
    added = replace_section("# Results\n\nwrk table\n", "## Counts\nfirst\n")
    assert added == f"# Results\n\nwrk table\n\n{BEGIN}\n## Counts\nfirst\n{END}\n"
    replaced = replace_section(added + "after\n", "## Counts\nsecond\n")
    assert replaced == f"# Results\n\nwrk table\n\n{BEGIN}\n## Counts\nsecond\n{END}\nafter\n"


def test_a_new_wrk_report_carries_the_recorded_section() -> None:
    old = replace_section("# old wrk report\n", "## Counts\nkept\n")
    new = carry_section(old, "# new wrk report\n")
    assert new.startswith("# new wrk report\n")
    assert "old wrk report" not in new
    assert f"{BEGIN}\n## Counts\nkept\n{END}" in new
    assert carry_section("# no section\n", "# new\n") == "# new\n"
