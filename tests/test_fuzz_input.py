"""Bad input, fuzzed: whatever a space file, a trial config or a flag holds, every
command answers with one line and exit code 2 (or runs), never a traceback, and starts
nothing on bad input.

Two layers: hypothesis mutates the shipped spaces and checks the validators in-process
(thousands of cases in seconds), then a fixed set of hostile files and flags goes
through ``study.cli.main`` for every command that takes them.
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from study.cli import main
from study.service.space import SearchSpace
from study.trial.config import ConfigError, from_mapping

ROOT = Path(__file__).resolve().parents[1]
SPACES = {p.stem: yaml.safe_load(p.read_text()) for p in (ROOT / "search_spaces").glob("*.yaml")}
EXAMPLES = int(os.environ.get("STUDY_FUZZ_EXAMPLES", "400"))

garbage = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.lists(st.integers(), max_size=4),
    st.dictionaries(st.text(max_size=8), st.integers(), max_size=3),
    st.sampled_from(
        [
            {"choice": []},
            {"choice": "abc"},
            {"uniform": [1, 0]},
            {"int": [0.5, 2]},
            {"loguniform": [0, 1]},
            {"choice": [{"choice": [1]}]},
            "firwin(taps=99999, cutoff=2)",
            "binomial-0",
            "\u202e\x00\n",
            [[[[[]]]]],
        ]
    ),
)


def _paths(value, prefix=()):
    """Every (path, value) of a nested mapping/list document."""
    yield prefix, value
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


def _replace(document, path, value):
    if not path:
        return value
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return document


@st.composite
def mutated_spaces(draw):
    name = draw(st.sampled_from(sorted(SPACES)))
    document = copy.deepcopy(SPACES[name])
    for _ in range(draw(st.integers(1, 3))):
        paths = [path for path, _ in _paths(document)]
        path = draw(st.sampled_from(paths))
        if draw(st.booleans()) and isinstance(document, dict):
            document = _replace(document, path, copy.deepcopy(draw(garbage)))
        else:  # a new, unknown or misspelt key somewhere
            parent = path[:-1]
            target = document
            for key in parent:
                target = target[key]
            if isinstance(target, dict):
                target[draw(st.text(min_size=1, max_size=10))] = copy.deepcopy(draw(garbage))
    return document


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(mutated_spaces())
def test_mutated_spaces_are_valid_or_one_line_config_errors(document):
    try:
        space = SearchSpace.parse(document if isinstance(document, dict) else {"x": document})
    except ConfigError as error:
        message = str(error)
        assert "\n" not in message and message.split(": ", 1)[0], message
        return
    # Accepted: then every alternative makes a valid trial config.
    space.data_sources()


HOSTILE = [
    None, True, 0, -1, 10**30, float("nan"), float("inf"), "", "abc", [], [1, 2], {}, {"a": 1},
    {"choice": []}, {"choice": "abc"}, {"choice": [[]]}, {"choice": [{}]}, {"uniform": [1, 0]},
    {"int": [0.5, 2]}, {"loguniform": [0, 1]}, {"choice": [{"choice": [1]}]}, [[[[[]]]]],
    "\u202e\x00\n",
]  # fmt: skip


@pytest.mark.parametrize("name", sorted(SPACES))
def test_every_field_of_every_space_rejects_hostile_values_in_one_line(name):
    """The deterministic sweep behind the random one: each field of each shipped space,
    replaced by each hostile value, parses or fails with a one-line ConfigError (the
    random search once found `scheduler.kind: []` raising TypeError; this finds it always)."""
    for path, _ in _paths(SPACES[name]):
        for value in HOSTILE:  # the root too: a whole document replaced
            document = _replace(copy.deepcopy(SPACES[name]), path, copy.deepcopy(value))
            try:
                SearchSpace.parse(document).data_sources()
            except ConfigError as error:
                assert "\n" not in str(error), (path, value, str(error))


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["model", "data", "augment", "train", "eval", "seed", "device", "zzz"]),
        st.one_of(garbage, st.dictionaries(st.text(max_size=12), garbage, max_size=4)),
        max_size=5,
    )
)
def test_trial_configs_are_valid_or_one_line_config_errors(document):
    try:
        config = from_mapping(document)
    except ConfigError as error:
        assert "\n" not in str(error)
        return
    for value in config.flat().values():
        if isinstance(value, float):
            assert math.isfinite(value)


# --- the commands, on hostile files and flags -------------------------------------------

BOMB = """
a: &a [x, x, x, x, x, x, x, x, x, x]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
model: {name: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]}
"""


def hostile_files(folder: Path) -> dict[str, Path]:
    files = {
        "yaml bomb": BOMB,
        "deep nesting": "model: " + "[" * 5000 + "]" * 5000,
        "deep mapping": "model:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 60)),
        "not yaml": "model: {name: [vgg\n",
        "a list": "- a\n- b\n",
        "empty": "",
        "comments only": "# nothing\n",
        "nan lr": "train: {lr: .nan}\n",
        "inf epochs": "train: {epochs: .inf}\n",
        "huge width": "model: {width: 1.0e308}\n",
        "huge int": "train: {epochs: 100000000000000000000000000000}\n",
        "unicode key": "model: {n\u00e4me\u202e: vgg}\n",
        "control key": 'model: {"na\\nme": vgg}\n',
        "bad filter": "model: {filter: 'firwin(taps=3, cutoff=7)'}\n",
        "anchor to unknown key": "x: &x {name: vgg13_bn}\nmodel: *x\n",
    }
    paths = {}
    for name, text in files.items():
        path = folder / (name.replace(" ", "-") + ".yaml")
        path.write_text(text, encoding="utf-8")
        paths[name] = path
    binary = folder / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00model: x")
    paths["not utf-8"] = binary
    paths["a folder"] = folder
    return paths


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _nothing_started(folder: Path) -> None:
    import ray

    assert not ray.is_initialized()
    assert not (folder / "ray_results").exists() and not (folder / "mlflow.db").exists()


@pytest.fixture
def hostile(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    return hostile_files(inputs)


@pytest.mark.parametrize("command", ["run", "trial"])
def test_commands_refuse_hostile_files_in_one_line(hostile, tmp_path, capsys, command):
    outcomes = {}
    for name, path in hostile.items():
        argv = [command, str(path)]
        if command == "trial":
            argv += ["--out", str(tmp_path / "out")]
        code, out, err = _run(argv, capsys)
        outcomes[name] = code
        assert "Traceback" not in err + out, (name, err)
        if code == 2:
            assert err.startswith("study: error: ") and len(err.strip().splitlines()) == 1, (
                name,
                err,
            )
        assert not (tmp_path / "out").exists(), name
        _nothing_started(tmp_path)
    assert set(outcomes.values()) == {2}, outcomes


@pytest.mark.parametrize(
    "argv",
    [
        ["resume", "no-such-study"],
        ["resume", "a\nb"],
        ["status", "no-such-study"],
        ["status", "x" * 10_000],
        ["pareto", "no-such-study", "--out", "OUT"],
        ["pareto", "s", "--out", "OUT", "--reference", "nan,1"],
        ["pareto", "s", "--out", "OUT", "--format", "\u202e"],
        ["report", "INPUTS", "--out", "OUT"],
        ["report", "INPUTS/binary.yaml", "--out", "OUT"],
        ["report", "INPUTS/binary.yaml", "--out", "OUT", "--images", "-5"],
        ["run", "INPUTS/empty.yaml", "--set", "a..b=1"],
        ["run", "INPUTS/empty.yaml", "--set", "=1"],
        ["run", "INPUTS/nan-lr.yaml", "--address", "256.0.0.1:1"],
        ["trial", "INPUTS/nan-lr.yaml", "--out", "OUT", "--set", "train.lr=[[[[[[1]]]]]]"],
    ],
)
def test_commands_refuse_hostile_flags_in_one_line(hostile, tmp_path, capsys, argv):
    argv = [
        a.replace("INPUTS", str(tmp_path / "inputs")).replace("OUT", str(tmp_path / "out"))
        for a in argv
    ]
    code, out, err = _run(argv, capsys)
    assert code == 2, (argv, out, err)
    assert err.startswith(("study: error: ", "study pareto: error: ")), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()
    _nothing_started(tmp_path)


# --- random flags on every command ------------------------------------------------------

FUZZED_COMMANDS = ("run", "resume", "status", "pareto", "trial", "report")


def _options(command: str) -> list[str]:
    """The option strings of ``study COMMAND`` (but --help), read from the parser."""
    from study.cli import _build_parser

    parser = _build_parser()
    (commands,) = (a for a in parser._actions if a.dest == "==SUPPRESS==" and a.choices)
    sub = commands.choices[command]
    return sorted(
        option
        for action in sub._actions
        for option in action.option_strings
        if option not in ("-h", "--help")
    )


OPTIONS = {command: _options(command) for command in FUZZED_COMMANDS}
hostile_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            *("", "-1", "nan", "1e999", "0", "x" * 5000, "\u202e\x00", "a=b", "{", "[[["),
            *("OUT", "INPUTS", "INPUTS/binary.yaml", "postgresql://u:p@127.0.0.1:1/x", "local"),
        ]
    ),
    st.from_regex(r"[a-z.]{1,12}=[\[\]{}a-z0-9:, .-]{0,20}", fullmatch=True),
)


@st.composite
def hostile_argvs(draw):
    command = draw(st.sampled_from(FUZZED_COMMANDS))
    names = [*HOSTILE_FILE_NAMES, "no-such-study", "INPUTS", "x" * 5000, "INPUTS/" + "y" * 300]
    positional = draw(st.sampled_from(names))
    argv = [command, positional]
    for _ in range(draw(st.integers(0, 4))):
        argv.append(draw(st.sampled_from(OPTIONS[command])))
        if draw(st.booleans()):
            argv.append(draw(hostile_text))
    return argv


HOSTILE_FILE_NAMES = ["INPUTS/yaml-bomb.yaml", "INPUTS/binary.yaml", "INPUTS/nan-lr.yaml"]


@settings(
    max_examples=max(EXAMPLES // 4, 20),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(argv=hostile_argvs())
def test_random_flags_on_every_command_are_one_line_errors(hostile, tmp_path, capsys, argv):
    """Every command with a hostile positional and random flags and values: exit 2 with
    one line, no traceback, nothing started or written."""
    argv = [
        a.replace("INPUTS", str(tmp_path / "inputs")).replace("OUT", str(tmp_path / "out"))
        for a in argv
    ]
    code, out, err = _run(argv, capsys)
    assert code == 2, (argv, out[-500:], err[-500:])
    assert err.startswith(("study: error: ", "study pareto: error: ")), (argv, err[-500:])
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err + out, (argv, err)
    assert not (tmp_path / "out").exists(), argv
    _nothing_started(tmp_path)


@pytest.mark.parametrize(
    ("name", "value"),
    [("STUDY_FRONT_REFRESH_S", "soon"), ("STUDY_STORAGE_PATIENCE_S", "-1"),
     ("STUDY_TRACKING_PATIENCE_S", "inf")],
)  # fmt: skip
def test_bad_durations_in_the_environment_are_refused_up_front(
    hostile, tmp_path, capsys, monkeypatch, name, value
):
    """Read later by the driver and the workers, so checked before anything starts."""
    monkeypatch.setenv(name, value)
    smoke = Path(__file__).resolve().parents[1] / "search_spaces" / "smoke.yaml"
    code, out, err = _run(["run", str(smoke)], capsys)
    assert code == 2, (out, err)
    assert err.strip() == f"study: error: {name}: {value!r} is not a number of seconds >= 0"
    _nothing_started(tmp_path)


def test_a_bad_switch_in_the_environment_is_refused_up_front(
    hostile, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("STUDY_TUNE_RESULT_FILES", "maybe")
    smoke = Path(__file__).resolve().parents[1] / "search_spaces" / "smoke.yaml"
    code, out, err = _run(["run", str(smoke)], capsys)
    assert code == 2, (out, err)
    allowed = "1, true, on, 0, false, off"
    assert err.strip() == f"study: error: STUDY_TUNE_RESULT_FILES: 'maybe' is not one of {allowed}"
    _nothing_started(tmp_path)


@pytest.mark.parametrize("value", ["often", "-5", "", "inf"])
def test_a_bad_tune_snapshot_period_is_refused_up_front(
    hostile, tmp_path, capsys, monkeypatch, value
):
    """``TUNE_GLOBAL_CHECKPOINT_S`` is Tune's; the service passes a user's value on, so
    it checks it first (Tune would raise mid-start)."""
    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", value)
    smoke = Path(__file__).resolve().parents[1] / "search_spaces" / "smoke.yaml"
    code, out, err = _run(["run", str(smoke)], capsys)
    assert code == 2, (out, err)
    expected = f"{value!r} is not 'auto' or a number of seconds >= 0"
    assert err.strip() == f"study: error: TUNE_GLOBAL_CHECKPOINT_S: {expected}"
    _nothing_started(tmp_path)
