"""`ferlab data info` and `ferlab data eda` end to end, and their error handling."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from conftest import assert_names, cli_error, make_class_tree
from ferlab.cli.main import app

runner = CliRunner()


def test_every_command_has_help() -> None:
    for args in (["--help"], ["data", "--help"], ["data", "info", "--help"], ["data", "eda", "--help"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "Usage" in result.output


def test_info_reports_counts_imbalance_and_class_weights(tmp_path: Path) -> None:
    root = make_class_tree(tmp_path / "d", {"angry": 8, "happy": 2})
    result = runner.invoke(app, ["data", "info", str(root)])
    assert result.exit_code == 0, result.output
    # val is carved from train (10%, at least one image): train angry 7, happy 2.
    assert "| angry | 7 | 1 | 8 | 16 |" in result.output
    assert_names(result.output, "Imbalance ratio", "3.5")
    # balanced weights: 9 / (2 * 7) and 9 / (2 * 2)
    assert "| 0.643 |" in result.output and "| 2.250 |" in result.output
    assert "48x48 (" in result.output and "Image modes: L" in result.output


def test_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "info", str(tmp_path / "missing")])
    cli_error(result, tmp_path / "missing", "no such")
    assert len(result.output.strip().splitlines()) == 1


def test_eda_writes_plots_and_summary(tmp_path: Path) -> None:
    root = make_class_tree(tmp_path / "d", {"sad": 4, "fear": 4})
    out = tmp_path / "eda"
    result = runner.invoke(app, ["data", "eda", str(root), "--out", str(out)])
    assert result.exit_code == 0, result.output
    for name in ("class_distribution.png", "samples.png", "summary.md"):
        assert (out / name).stat().st_size > 0
    summary = (out / "summary.md").read_text()
    assert "| train |" in summary and "Warnings" in summary and "None." in summary
    assert "warning" not in result.output


def test_eda_warns_when_training_images_are_blurred(tmp_path: Path) -> None:
    root = make_class_tree(tmp_path / "d", {"sad": 4, "fear": 4}, blur_split="train")
    out = tmp_path / "eda"
    result = runner.invoke(app, ["data", "eda", str(root), "--out", str(out)])
    assert result.exit_code == 0, result.output
    [warning] = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert_names(warning, "blurrier", "training", "test")
    assert "much blurrier" in (out / "summary.md").read_text()


def test_eda_warns_when_split_sizes_differ(tmp_path: Path) -> None:
    from PIL import Image

    root = make_class_tree(tmp_path / "d", {"sad": 3, "fear": 3})
    for path in (root / "test").rglob("*.png"):
        Image.open(path).resize((96, 96)).save(path)
    result = runner.invoke(app, ["data", "eda", str(root), "--out", str(tmp_path / "eda")])
    [warning] = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert_names(warning, "training", "48x48", "test", "96x96")
