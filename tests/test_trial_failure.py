"""A trial that fails for good, for a real reason: its data folder holds a corrupt
image. The study grids over a good and a corrupt copy of one image-folder tree; the
corrupt trial's retry runs and fails too, then it ends FAILED in MLflow with the reason,
FAIL in Optuna, and the study finishes with ``1 failed`` (exit code 1) while the good
trial completes. After the image is repaired, ``study resume`` re-runs the failed trial
(``resume_errored``, docs/study.md): it completes in MLflow, and Optuna keeps it FAIL
(the documented limit)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import optuna
from finished_study import study_runs
from optuna.storages.journal import JournalFileBackend
from PIL import Image
from runs import SMOKE, TINY, environment
from servers import mlflow_server, study

CLASSES, TRAIN, TEST = ("circle", "square"), 80, 24


def _png(rng: np.random.Generator, label: int) -> bytes:
    """A 32x32 image whose mean brightness says its class."""
    pixels = rng.integers(0, 128, (32, 32, 3)) + 100 * label
    buffer = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def write_tree(root: Path, seed: int = 0) -> Path:
    """``root/{train,test}/{circle,square}/NNNN.png``."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", TRAIN), ("test", TEST)):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for index in range(count):
                (folder / f"{index:04d}.png").write_bytes(_png(rng, label))
    return root


def test_a_trial_that_fails_for_good(tmp_path):
    good = write_tree(tmp_path / "good")
    corrupt = write_tree(tmp_path / "corrupt", seed=1)
    broken = corrupt / "train" / "square" / "0007.png"
    repaired = broken.read_bytes()
    broken.write_bytes(repaired[: len(repaired) // 3])  # a truncated file
    args = [
        *TINY,
        "--set", f"data.source={{choice: [{good}, {corrupt}]}}",
        "--set", "model.filter=delta",
        "--set", "data.train_images=96",
        "--set", "data.validation=32",
        "--set", "data.test_images=32",
        "--set", "eval.images=16",
        "--set", "study.retries=1",
        "--name", "corrupt",
    ]  # fmt: skip
    cache = {"STUDY_CACHE_DIR": str(tmp_path / "cache")}
    with mlflow_server(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path) as url:
        env = {**environment(url), **cache}
        result = study("run", str(SMOKE), *args, cwd=tmp_path, env=env)
        output = result.stdout + result.stderr
        assert result.returncode == 1, output[-3000:]
        assert "1 of 2 trials complete, 1 failed" in output
        parent, children = study_runs(url, "corrupt")
        by_source = {c.data.params["data.source"]: c for c in children}
        assert set(by_source) == {str(good), str(corrupt)} and len(children) == 2
        failed = by_source[str(corrupt)]
        assert failed.info.status == "FAILED"
        reason = failed.data.tags["study.failure"]
        assert f"{broken.relative_to(corrupt / 'train')}" in reason and "readable image" in reason
        assert by_source[str(good)].info.status == "FINISHED"
        assert parent.info.status == "FAILED"
        assert parent.data.metrics["trials_failed"] == 1
        assert parent.data.metrics["trials_complete"] == 1
        assert _optuna_states(tmp_path) == ["COMPLETE", "FAIL"]
        (errors,) = (tmp_path / "ray_results" / "corrupt").glob("*/error.txt")
        text = errors.read_text()  # the attempt and its one retry (study.retries=1)
        assert "Failure # 2" in text and "Failure # 3" not in text, text[-2000:]

        broken.write_bytes(repaired)  # the user repairs the data and resumes
        resumed = study("resume", "corrupt", cwd=tmp_path, env=env)
        output = resumed.stdout + resumed.stderr
        assert resumed.returncode == 0, output[-3000:]
        assert "2 of 2 trials complete" in output
        parent, children = study_runs(url, "corrupt")
        assert len(children) == 2  # the same run, re-run: no second child
        rerun = next(c for c in children if c.data.params["data.source"] == str(corrupt))
        assert rerun.info.status == "FINISHED" and "study.failure" not in rerun.data.tags
        assert "test/acc" in rerun.data.metrics
        assert parent.info.status == "FINISHED"
        assert _optuna_states(tmp_path) == ["COMPLETE", "FAIL"]  # Optuna keeps it failed


def _optuna_states(folder: Path) -> list[str]:
    journal = folder / "ray_results" / "corrupt" / "optuna.journal"
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    return sorted(
        t.state.name for t in optuna.load_study(study_name="corrupt", storage=storage).trials
    )
