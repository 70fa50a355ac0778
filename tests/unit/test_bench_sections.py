"""`bench.instructions` and `bench.paired` keep their sections of bench/RESULTS.md when
`python -m bench` rewrites the rest."""

from __future__ import annotations

from bench import paired
from bench.__main__ import keep_recorded_sections
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


def test_a_new_wrk_report_keeps_every_harness_section() -> None:
    old = replace_section("# old wrk report\n", "## Counts\nkept\n")
    old = replace_section(old, "## Turns\nkept too\n", begin=paired.BEGIN, end=paired.END)
    served = {"begin": paired.SERVED_BEGIN, "end": paired.SERVED_END}
    old = replace_section(old, "## Served\nkept three\n", **served)
    new = keep_recorded_sections(old, "# new wrk report\n")
    assert new.startswith("# new wrk report\n")
    assert f"{BEGIN}\n## Counts\nkept\n{END}" in new
    assert f"{paired.BEGIN}\n## Turns\nkept too\n{paired.END}" in new
    assert f"{paired.SERVED_BEGIN}\n## Served\nkept three\n{paired.SERVED_END}" in new
    # Recording one harness leaves the other's section as it was.
    again = replace_section(new, "## Turns\nnewer\n", begin=paired.BEGIN, end=paired.END)
    assert f"{BEGIN}\n## Counts\nkept\n{END}" in again
    assert "kept too" not in again
    assert "newer" in again
