"""One trial: train one configuration, evaluate it, checkpoint every epoch.

:func:`run_trial` is the unit that Ray Tune schedules; it runs just as well alone,
without Ray: it takes a :class:`~study.trial.config.TrialConfig`, an output folder and a
``report`` callback that receives each epoch's metrics.

Training follows the paper's Section 4.1 by default: SGD with momentum 0.9, batch 128,
learning rate 0.1 with step decay. The dataset sits on the device as uint8; batches
are gathered, augmented (:mod:`study.data.augment`) and standardised there.

Which split each metric comes from: after every epoch, ``val_*`` metrics on the
validation split (``data.validation`` training images held out, never trained on);
once, at the end, ``test_*`` metrics on the test set (all circular shifts). A search
chooses on validation metrics; the test set is reported, never used to choose.

Every epoch ends with ``OUT/checkpoint.pt``: model, optimiser, scheduler, the RNG
states and the history so far. Running a trial again on the same folder resumes from
it and ends with the same final metrics as an uninterrupted run (bit-exact on the CPU).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from study import models
from study.data import to_float
from study.data.augment import augment
from study.data.dataset import Dataset, load_dataset
from study.layers import filter_parameters
from study.metrics import evaluate, summary
from study.metrics.figures import ESSENTIAL, report_figures
from study.metrics.names import FINAL_METRICS, TEST_METRICS, VAL_METRICS, family_metric_names
from study.metrics.probabilities import shift_probabilities_by
from study.metrics.scores import accuracy, consistency, shifted_scores
from study.trial.checkpoint import (
    CHECKPOINT,
    HISTORY_FILE,
    METRICS_FILE,
    load_checkpoint,
    save_checkpoint,
)
from study.trial.config import ConfigError, Report, TrialConfig, check_crop_margin

if TYPE_CHECKING:
    from study.trial.simulated import SimulatedTraining

#: Receives the trained network (eval mode) and an input example ``(1, C, H, W)``.
KeepModel = Callable[[torch.nn.Module, torch.Tensor], None]


class TrialFailed(RuntimeError):
    """The trial cannot go on (its loss diverged); ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def resolve_device(name: str) -> torch.device:
    """``auto``: the first CUDA GPU where there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", f"{name} asked for, but this machine has no CUDA GPU")
    return device


def machine_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def pin_threads(count: int) -> int:
    """Run torch's intra-op work on ``count`` threads (at least 1), whatever
    ``OMP_NUM_THREADS`` says: a trial uses exactly the CPUs it was given. Returns the
    count set."""
    count = max(1, int(count))
    torch.set_num_threads(count)
    return count


def run_trial(
    config: TrialConfig,
    out: str | Path | None = None,
    report: Report | None = None,
    progress: bool = True,
    dataset: Dataset | None = None,
    threads: int | None = None,
    keep_model: KeepModel | None = None,
) -> dict[str, Any]:
    """Train and evaluate ``config``; return the final metrics (named keys: ``val_*``
    when there is a validation split, ``test_acc``, ``test_consistency``, ...).

    With ``out``, checkpoints, ``metrics.json``, ``history.json`` and figures go there,
    and a checkpoint found there is resumed. ``report(metrics)`` is called after every
    epoch (``done: False``) and once at the end with the final metrics (``done: True``).
    ``threads``: torch's CPU threads (default: every CPU this process may use; the study
    service passes the CPUs Ray reserved for the trial). ``keep_model(model, example)``
    is called once training and evaluation are done, before the final report (the
    service logs the model to MLflow). Raises :class:`TrialFailed` when the loss stops
    being finite.
    """
    started = time.perf_counter()
    out = Path(out) if out is not None else None
    trainer = _trainer(config, dataset, threads, progress)
    if out is not None and (out / CHECKPOINT).is_file():
        trainer.resume(out / CHECKPOINT)
    training = time.perf_counter()
    trainer.seconds["setup"] = training - started
    epochs = range(trainer.epoch, config.train.epochs)
    bar = tqdm(epochs, desc="epochs", unit="epoch", disable=None if progress else True)
    for epoch in bar:
        row = trainer.train_epoch(epoch)
        trainer.history.append(row)
        if out is not None:
            saving = time.perf_counter()
            trainer.save(out / CHECKPOINT)
            trainer.seconds["checkpoint"] += time.perf_counter() - saving
        if progress:
            bar.write(trainer.epoch_line(row))
        if report is not None:
            report({**row, "done": False})
    final = trainer.finish(out)
    final["seconds_this_run"] = time.perf_counter() - training
    final["threads"] = trainer.used_threads()  # measured: what training really used
    if keep_model is not None and (kept := trainer.trained_model()) is not None:
        keep_model(*kept)
    if report is not None:
        report({**final, "done": True})
    return final


def _trainer(
    config: TrialConfig, dataset: Dataset | None, threads: int | None, progress: bool
) -> Training | SimulatedTraining:
    """The trainer ``run_trial``'s loop drives: closed-form metrics for a simulated
    trial, else the network on its device with its data (threads pinned, the data
    loaded and checked)."""
    if config.simulate.enabled:
        from study.trial.simulated import SimulatedTraining

        return SimulatedTraining(config)
    threads = pin_threads(threads if threads is not None else machine_cpus())
    device = resolve_device(config.device)
    data = (dataset or load_dataset(**_data_args(config))).to(device)
    if "crop" in config.eval.families:
        check_crop_margin(config.eval.crop_margin, data.test_images.shape[-2:])
    if progress:
        print(f"{data.description}; {device}, {threads} torch threads", flush=True)
    return Training(config, data, device)


def _data_args(config: TrialConfig) -> dict[str, Any]:
    return {
        "source": config.data.source,
        "train_images": config.data.train_images,
        "test_images": config.data.test_images,
        "seed": config.data.seed,
        "validation": config.data.validation,
    }


class Training:
    """The real trainer behind :func:`run_trial`: the state of one trial between epochs,
    everything a checkpoint holds."""

    def __init__(self, config: TrialConfig, data: Dataset, device: torch.device) -> None:
        self.config, self.data, self.device = config, data, device
        torch.manual_seed(config.seed)
        spec = config.model
        self.model = models.build(**spec.build_args(data.num_classes)).to(device)
        if config.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.forward = torch.compile(self.model) if config.train.compile else self.model
        self.optimizer = _optimizer(self.model, config)
        self.steps_per_epoch = math.ceil(len(data.train_images) / config.train.batch_size)
        self.scheduler, self.per_step = _scheduler(self.optimizer, config, self.steps_per_epoch)
        self.generator = torch.Generator().manual_seed(config.seed)  # order and augmentation
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        #: Where this run's time went outside training (seconds, this process only).
        self.seconds = {"setup": 0.0, "checkpoint": 0.0, "test": 0.0, "figures": 0.0}
        self.test_float = to_float(data.test_images, data.mean, data.std)
        count = config.eval.val_images or len(data.val_images)
        self.val_float = to_float(data.val_images[:count], data.mean, data.std)
        self.val_labels = data.val_labels[:count]

    # -- training ---------------------------------------------------------------
    def train_epoch(self, epoch: int) -> dict[str, Any]:
        config, data = self.config.train, self.data
        self.model.train()
        started = time.perf_counter()
        order = torch.randperm(len(data.train_images), generator=self.generator)
        total, count = torch.zeros((), device=self.device), 0
        for step, batch in enumerate(order.split(config.batch_size)):
            batch = batch.to(self.device)
            images = augment(
                data.train_images[batch],
                self.config.augment.kind,
                self.generator,
                padding=self.config.augment.padding,
                mode=self.config.augment.mode,
                max_shift=self.config.augment.max_shift,
            )
            images = to_float(images, data.mean, data.std)
            if config.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, torch.bfloat16, enabled=config.bf16):
                logits = self.forward(images)
            loss = F.cross_entropy(
                logits.float(), data.train_labels[batch], label_smoothing=config.label_smoothing
            )
            if not torch.isfinite(loss):
                raise TrialFailed(f"diverged: loss {loss.item()} at epoch {epoch + 1}, step {step}")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            if self.per_step:
                self.scheduler.step()
            total += loss.detach() * len(batch)
            count += len(batch)
        if not self.per_step:
            self.scheduler.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - started
        self.epoch = epoch + 1
        validating = time.perf_counter()
        scores = self.validate()
        return {
            "epoch": epoch + 1,
            "train_loss": total.item() / count,
            "lr": self.optimizer.param_groups[0]["lr"],
            **scores,
            "epoch_seconds": seconds,
            "validation_seconds": time.perf_counter() - validating,
            "images_per_second": count / seconds,
        }

    @torch.inference_mode()
    def validate(self) -> dict[str, float]:
        """Per-epoch metrics on the validation split (none without one): accuracy and
        cross-entropy unshifted, accuracy at one seeded random circular shift per image,
        and the consistency, sampled (:func:`study.metrics.shifted_scores`: Section 4.2's
        protocol, one pair of shifts per image) or exact over all shifts
        (``eval.val_method``)."""
        images, labels = self.val_float, self.val_labels
        if not len(images):
            return {}
        self.model.eval()
        seed = self.config.seed + 1
        if self.config.eval.val_method == "exact":
            probs, _ = shift_probabilities_by(self.model, images, self.config.eval.method)
            scores = accuracy(probs, labels.cpu(), seed)
            unshifted = probs[:, 0, 0].gather(1, labels.cpu().view(-1, 1)).clamp_min(1e-12)
            return {
                "val_acc": scores["acc"],
                "val_acc_shift": scores["acc_shift_random"],
                "val_consistency": consistency(probs),
                "val_loss": -unshifted.log().mean().item(),
            }
        max_shift = min(self.config.eval.consistency_max_shift, max(images.shape[-2:]) // 2)
        scores = shifted_scores(self.model, images, labels, max_shift, seed=seed, batch_size=500)
        return {
            "val_acc": scores["acc"],
            "val_acc_shift": scores["acc_shift"],
            "val_consistency": scores["consistency"],
            "val_loss": scores["loss"],
        }

    # -- checkpoints ------------------------------------------------------------
    def epoch_line(self, row: dict[str, Any]) -> str:
        """The progress line of an epoch."""
        line = f"epoch {row['epoch']}/{self.config.train.epochs}  loss {row['train_loss']:.4f}  "
        if "val_acc" in row:
            line += (
                f"val acc {row['val_acc']:.4f}  shifted {row['val_acc_shift']:.4f}  "
                f"consistency {row['val_consistency']:.4f}  "
            )
        return line + f"{row['images_per_second']:.0f} img/s"

    def used_threads(self) -> int:
        return torch.get_num_threads()

    def trained_model(self) -> tuple[nn.Module, torch.Tensor]:
        """The network in eval mode and an input example ``(1, C, H, W)``."""
        return self.model.eval(), self.test_float[:1].to(self.device)

    def save(self, path: Path) -> None:
        save_checkpoint(
            path,
            self.model,
            data={"mean": list(self.data.mean), "std": list(self.data.std)},
            config=self.config.to_dict(),
            epoch=self.epoch,
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(),
            generator=self.generator.get_state(),
            torch_rng=torch.get_rng_state(),
            cuda_rng=torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            history=self.history,
        )

    def resume(self, path: Path) -> None:
        model, payload = load_checkpoint(path, self.device)
        if payload.get("config") != self.config.to_dict():
            raise ConfigError(
                "out",
                f"{path.parent} holds a trial with another config; "
                "use a new --out folder (or the same config to resume)",
            )
        self.model.load_state_dict(model.state_dict())
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.generator.set_state(payload["generator"])
        torch.set_rng_state(payload["torch_rng"])
        if payload["cuda_rng"]:
            torch.cuda.set_rng_state_all(payload["cuda_rng"])
        self.epoch, self.history = payload["epoch"], list(payload["history"])

    # -- the end ----------------------------------------------------------------
    def finish(self, out: Path | None) -> dict[str, Any]:
        """The full metric set of :mod:`study.metrics` on the first ``eval.images``
        test images, written to ``OUT/metrics.json`` with figures."""
        config = self.config.eval
        count = config.images or len(self.test_float)
        images, labels = self.test_float[:count], self.data.test_labels[:count].cpu()
        testing = time.perf_counter()
        result = evaluate(
            self.model,
            images,
            labels,
            method=config.method,
            feature_images=min(config.feature_images, count) if count >= 2 else 0,
            feature_max_shift=config.feature_shifts,
            seed=self.config.seed,
            families=config.families,
            crop_margin=config.crop_margin,
            subpixel_steps=config.subpixel_steps,
        )
        self.seconds["test"] = time.perf_counter() - testing
        last = self.history[-1] if self.history else {}
        final = {
            **{name: last[name] for name in VAL_METRICS if name in last},
            "test_acc": result["acc"],
            "test_acc_shift_random": result["acc_shift_random"],
            "test_acc_shift_mean": result["acc_shift_mean"],
            "test_consistency": result["consistency"],
            "test_variation": result["variation"],
            **{
                f"test_{name}": result[name]
                for name in (n.removeprefix("test_") for n in family_metric_names())
                if name in result
            },
            "train_loss": last.get("train_loss"),
            "epochs": self.epoch,
            "train_seconds": sum(row["epoch_seconds"] for row in self.history),
            "validation_seconds": sum(row.get("validation_seconds", 0.0) for row in self.history),
            "eval_images": result["images"],
            "eval_shifts": result["shifts"],
            "eval_method": result["shift_method"],
            "eval_seconds": result["shift_seconds"],
            **{
                f"eval_seconds_{family}": result[f"shift_seconds_{family}"]
                for family in config.families
            },
            "data": self.data.description,
            "device": str(self.device),
        }
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            details = summary(result)
            (out / METRICS_FILE).write_text(json.dumps({**final, "details": details}, indent=2))
            (out / HISTORY_FILE).write_text(json.dumps(self.history, indent=2))
            figures = out / "figures"
            figures.mkdir(exist_ok=True)
            label = f"{self.config.model.name} {self.config.model.downsampling}"
            drawing = time.perf_counter()
            drawn = {}
            if config.figures != "none":
                only = ESSENTIAL if config.figures == "essential" else None
                drawn = {
                    **report_figures({label: result}, only),
                    "training": _training_figure(self.history),
                }
            for name, figure in drawn.items():
                figure.savefig(figures / f"{name}.png", dpi=110)
            self.seconds["figures"] = time.perf_counter() - drawing
        final.update({f"{stage}_seconds": value for stage, value in self.seconds.items()})
        return final


def _optimizer(model: nn.Module, config: TrialConfig) -> torch.optim.Optimizer:
    """SGD; learnable filter taps form their own group (own learning rate, no decay)."""
    train = config.train
    taps = {id(p) for _, p in filter_parameters(model)}
    groups = [
        {"params": [p for p in model.parameters() if id(p) not in taps]},
        {
            "params": [p for p in model.parameters() if id(p) in taps],
            "lr": train.filter_lr if train.filter_lr is not None else train.lr,
            "weight_decay": 0.0,
        },
    ]
    return torch.optim.SGD(
        [g for g in groups if g["params"]],
        lr=train.lr,
        momentum=train.momentum,
        nesterov=train.nesterov,
        weight_decay=train.weight_decay,
    )


def _scheduler(optimizer: torch.optim.Optimizer, config: TrialConfig, steps: int):
    """``(scheduler, steps per batch?)``: step decay per epoch, cosine and one-cycle
    per batch."""
    train = config.train
    total = train.epochs * steps
    if train.schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(
            optimizer, list(train.milestones), train.gamma
        ), False
    if train.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total), True
    if train.schedule == "onecycle":
        max_lr = [group["lr"] for group in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr, total_steps=total), True
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0), False


def _training_figure(history: list[dict[str, Any]]):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.5), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    epochs = [row["epoch"] for row in history]
    loss_ax.plot(epochs, [row["train_loss"] for row in history], marker=".", label="train_loss")
    if history and "val_loss" in history[0]:
        loss_ax.plot(epochs, [row["val_loss"] for row in history], marker=".", label="val_loss")
        loss_ax.legend(fontsize=7)
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy (nats)", yscale="log")
    for key in VAL_METRICS:
        if history and key in history[0] and key != "val_loss":
            acc_ax.plot(epochs, [row[key] for row in history], marker=".", label=key)
    acc_ax.set(xlabel="epoch", ylim=(0, 1), title="validation split")
    if acc_ax.lines:
        acc_ax.legend(fontsize=7)
    else:
        acc_ax.text(0.5, 0.5, "no validation split\n(data.validation: 0)", ha="center")
    return fig


__all__ = [
    "CHECKPOINT",
    "FINAL_METRICS",
    "TEST_METRICS",
    "VAL_METRICS",
    "Report",
    "TrialFailed",
    "machine_cpus",
    "pin_threads",
    "resolve_device",
    "run_trial",
]
