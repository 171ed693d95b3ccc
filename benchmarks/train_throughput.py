"""Times each trained model's training steps/second as the study's loop runs them against its bare step rate.

Every trained model of a config is timed on one device in one run: the task models
(`modality.task_models`: the classifier, and the segmenter on MRI) on the 'diag_train' split and
each trainable reconstructor (unet, gan, diffusion) on 'recon_train', degraded by the study's
physics, with the frozen models it `uses` handed to it as the study does. Only the model
contract is used, so any change in how a model makes its batches or objectives is measured as
it is:
- "train" is `run_training` itself on the model's `training_plan`: each step draws its batch
  (`plan.batches(step)`: sampling, on-the-fly degradation), moves it to the device, runs every
  objective's loss, backward and optimiser step, then steps the schedules;
- "bare" is the same objectives' forward, loss, backward and optimiser step on ONE batch drawn
  once and already on the device: no drawing, no degradation, no transfer, no schedules. Draws an
  objective makes itself (diffusion's timesteps and noise) are in both.
train ÷ bare is the share of the models' own speed training keeps (1 = making batches costs
nothing). Both are warmed up first; CUDA is synchronised before each clock reading; the device
line names the card (or CPU). Batch and image size are the config's; the cohort is only as large
as `--images` asks (batches are drawn with replacement, so their size does not depend on it).
A plan's steps are cut to warm-up + `--steps` (never more than the config trains for).

    python -m benchmarks.train_throughput [--config configs/demo.yaml] [--steps 30] [--device auto]
        [--images 256] [--warmup 3] [--image-size N]
"""

from __future__ import annotations

import argparse
import dataclasses

from benchmarks.common import clock, device_name, sized_config
from recon_core.config_loader import load_config
from recon_core.device import pick_device
from recon_core.mitigation.variant import MitigatedReconstructor
from recon_core.modalities import get_modality
from recon_core.models.batches import SplitData, TrainingBatch
from recon_core.models.contract import TrainableModel, TrainingPlan, frozen_for_training, run_training
from recon_core.progress import silent
from recon_core.reconstructors import build_reconstructor
from recon_core.runner.study import split_data


def _train_rate(plan: TrainingPlan, warmup: int) -> float:
    """Steps/s of `run_training` on the plan, timed from the start of its first step after `warmup` steps."""
    started: list[float] = []

    def batches(step: int) -> TrainingBatch:
        if step == warmup:
            started.append(clock(plan.device))
        return plan.batches(step)

    run_training(dataclasses.replace(plan, batches=batches), silent, "timing")
    return (plan.steps - warmup) / (clock(plan.device) - started[0])


def _bare_rate(plan: TrainingPlan, batch: TrainingBatch, warmup: int, steps: int) -> float:
    """Steps/s of the plan's objectives (forward, loss, backward, optimiser step) on one batch already on the device."""
    for module in plan.modules:
        module.train()
    for step in range(warmup + steps):
        if step == warmup:
            start = clock(plan.device)
        for objective in plan.objectives:
            loss = objective.loss(objective.output(batch), batch)
            objective.optimiser.zero_grad()
            loss.backward()
            objective.optimiser.step()
    rate = steps / (clock(plan.device) - start)
    for module in plan.modules:
        module.eval()
    return rate


def _time(model: TrainableModel, data: SplitData, frozen: dict[str, TrainableModel], warmup: int,
          steps: int) -> tuple[int, int, float, float]:
    """(batch size, steps timed, train steps/s, bare steps/s) of one model, handed the frozen models it uses."""
    with frozen_for_training({name: frozen[name] for name in model.uses}) as handed:
        plan = model.training_plan(data, handed)
        total = min(warmup + steps, plan.steps)  # a one-cycle schedule refuses steps beyond its length
        lead = min(warmup, total - 1)
        plan = dataclasses.replace(plan, steps=total)
        train = _train_rate(plan, lead)
        batch = plan.batches(total).to(plan.device)
        return len(batch.images), total - lead, train, _bare_rate(plan, batch, lead, total - lead)


def main(argv: list[str] | None = None) -> list[tuple[str, float, float]]:
    """Prints and returns (model, train steps/s, bare steps/s) for every trained model of the config."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per model, after the warm-up")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--images", type=int, default=256, help="images of each training split (the cohort's size)")
    parser.add_argument("--image-size", type=int, help="default: the config's")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = parser.parse_args(argv)
    config = sized_config(load_config(args.config), {"diag_train": args.images, "recon_train": args.images},
                          args.image_size)
    modality = get_modality(config.modality)
    device = pick_device(args.device)
    cohort = modality.cohort_source(config).load()
    physics = modality.build_physics(config)
    task_models = modality.task_models(config, cohort.labels, device)
    frozen: dict[str, TrainableModel] = {model.name: model for model in task_models}  # as the study hands them over
    diag_train, recon_train = split_data(cohort, "diag_train"), split_data(cohort, "recon_train", physics)
    models: list[tuple[TrainableModel, SplitData]] = [(model, diag_train) for model in task_models]
    for name in config.reconstructors.names:
        recon = build_reconstructor(name, config, device)
        if isinstance(recon, MitigatedReconstructor):  # where its soft decisions cut: untrained here, so any threshold
            recon.thresholds = dict.fromkeys(cohort.labels, 0.5)
        if isinstance(recon, TrainableModel):
            models.append((recon, recon_train))
    print(f"{config.name} on {device_name(device)}: {config.cohort.image_size} px, {args.warmup} warm-up steps, "
          f"cohort of {config.cohort.n_subjects} subjects")
    print(f"{'model':<12}{'batch':>6}{'steps':>6}{'train steps/s':>15}{'bare steps/s':>14}{'train / bare':>14}")
    out = []
    for model, data in models:
        batch, timed, train, bare = _time(model, data, frozen, args.warmup, args.steps)
        print(f"{model.name:<12}{batch:>6}{timed:>6}{train:>15.2f}{bare:>14.2f}{train / bare:>14.2f}")
        out.append((model.name, train, bare))
    return out


if __name__ == "__main__":
    main()
