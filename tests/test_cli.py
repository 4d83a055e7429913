"""The ``study`` command: every command has --help, bad input is one line and exit 2,
and the demo shows blur reducing shift sensitivity."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from study.demo import DemoConfig, run_demo, toy_example


def study(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "study", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


@pytest.mark.parametrize(
    "command",
    [[], *[[name] for name in ("demo", "filters", "models", "report", "trial")]]
    + [[name] for name in ("run", "resume", "status", "pareto")],
)
def test_every_command_has_help(command):
    result = study(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: study" in result.stdout


def test_demo_help_states_the_default_filters():
    result = study("demo", "--help")
    assert ",".join(DemoConfig().filters) in result.stdout.replace("\n", "").replace(" ", "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["demo", "--filters", "delta,binomal-5"], "--filters.family: unknown family 'binomal'"),
        (["demo", "--filters", "firwin(taps=5, cutoff=2)"], "--filters.cutoff: 2"),
        (["demo", "--width", "0"], "--width: 0.0 is outside (0, 4]"),
        (["demo", "--images", "many"], "argument --images: invalid int value: 'many'"),
        (["demo", "--model", "vgg99"], "--model: unknown network 'vgg99'; allowed:"),
        (["demo", "--max-shift", "0"], "--max-shift: 0 is outside 1 to 32"),
        (["filters", "rect-0"], "SPEC.taps: 'rect-0' has 0 taps; allowed: 1 to 64"),
        (
            ["filters", "delta", "--plot", "out.txt"],
            "--plot: out.txt must end in .png, .svg or .pdf",
        ),
        (["nonsense"], "invalid choice: 'nonsense'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, message):
    result = study(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("study: error: ")
    assert message in lines[0]
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing started or half-written


def test_demo_out_must_be_a_folder(tmp_path):
    target = tmp_path / "file"
    target.write_text("keep me")
    result = study("demo", "--out", str(target))
    assert result.returncode == 2
    assert "--out:" in result.stderr and "is not a folder" in result.stderr
    assert target.read_text() == "keep me"


def test_filters_prints_table1_and_plots(tmp_path):
    result = study("filters", "--plot", str(tmp_path / "responses.png"))
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines()[1:] if not line.startswith("wrote")]
    assert len(rows) == 19
    assert rows[0].split()[0] == "delta"
    assert (tmp_path / "responses.png").stat().st_size > 10_000


def test_filters_json_is_canonical():
    result = study("filters", "--json", "firwin(cutoff=0.4, taps=5)")
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(result.stdout)
    assert row["filter"] == "firwin(taps=5, cutoff=0.4, window=hamming)"
    assert row["dc_gain"] == pytest.approx(1.0)


def test_toy_example_matches_the_paper():
    toy = toy_example()
    assert toy["delta"] == [0, 1, 0, 1]
    assert toy["delta shifted"] == [1, 1, 1, 1]
    assert toy["triangle-3"] == [0.5, 1, 0.5, 1]
    assert toy["triangle-3 shifted"] == [0.75] * 4


def test_demo_blur_reduces_shift_distance(tmp_path):
    config = DemoConfig(width=0.125, filters=("delta", "binomial-5"), images=8, max_shift=4)
    results = run_demo(config, tmp_path)
    delta, binomial = (row["shift_distance"] for row in results["filters"])
    assert binomial < 0.5 * delta, results["filters"]
    assert json.loads((tmp_path / "demo.json").read_text())["filters"][0]["filter"] == "delta"
    assert (tmp_path / "demo.png").stat().st_size > 10_000


def test_demo_command_end_to_end(tmp_path):
    out = tmp_path / "out"
    args = ["demo", "--out", str(out), "--width", "0.125", "--images", "4", "--max-shift", "2"]
    result = study(*args, "--filters", "delta;firwin(taps=4, cutoff=0.5)")
    assert result.returncode == 0, result.stderr
    assert "firwin(taps=4, cutoff=0.5, window=hamming)" in result.stdout
    assert (out / "demo.json").exists() and (out / "demo.png").exists()
