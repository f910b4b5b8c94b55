"""The one Markdown table builder every report uses."""

from __future__ import annotations

from ferlab.data.markdown import markdown_table


def test_markdown_table_aligns_the_columns_asked_and_escapes_pipes() -> None:
    table = markdown_table(("model", "data", "accuracy"), [("a|b", "fer", "87.63%"), ("c", "ferplus", 1)], right=[2])
    assert table.splitlines() == [
        "| model | data | accuracy |",
        "|---|---|---:|",
        "| a\\|b | fer | 87.63% |",
        "| c | ferplus | 1 |",
    ]
    assert markdown_table(("empty",), []) == "| empty |\n|---|"
