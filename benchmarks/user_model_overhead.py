"""Times a user's reconstructor against the same network built in: the sweep's images/s through each route.

The config's U-Net is exported as a user would bring it, as a TorchScript file and as a MONAI
bundle (network_def + state dict), and declared under `reconstructors.user`. Each route then
runs the same sweep cells (`evaluate_cell` with a level's inputs kept, as every reconstructor
after the first at a level runs in a study) on the same test images, in alternating rounds so
the machine's noise falls on all of them alike; the median over rounds is reported with its
ratio to the built-in (1 = no overhead; the user route adds the contract's checks of every
batch: shape, finite values and range). Weights are untrained: speed does not depend on them.

    python -m benchmarks.user_model_overhead [--config configs/demo.yaml] [--images 256] [--rounds 3]
        [--device auto] [--image-size N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from benchmarks.common import clock, device_name, first, sweep_bench
from recon_core.config import StudyConfig, UNetConfig
from recon_core.config_loader import from_dict
from recon_core.reconstructors import Reconstructor, build_reconstructor
from recon_core.runner.evaluate import evaluate_cell
from recon_core.runner.inputs import KeptInputs, input_batches


def unet_bundle(net: torch.nn.Module, cfg: UNetConfig, bundle: Path) -> Path:
    """A MONAI bundle of a residual U-Net as a user would ship it: configs/inference.json's network_def, and its
    state dict as models/model.pt."""
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    (bundle / "configs" / "inference.json").write_text(json.dumps({"network_def": {
        "_target_": "recon_core.reconstructors.unet_denoiser.Residual",
        "body": {"_target_": "monai.networks.nets.UNet", "spatial_dims": 2, "in_channels": 1, "out_channels": 1,
                 "channels": list(cfg.channels), "strides": list(cfg.strides), "num_res_units": cfg.num_res_units}}}))
    torch.save(net.state_dict(), bundle / "models" / "model.pt")
    return bundle


def exported(config: StudyConfig, device: torch.device, folder: Path) -> dict[str, Reconstructor]:
    """The config's U-Net built in, and the same weights brought as a TorchScript file and as a MONAI bundle."""
    unet = build_reconstructor("unet", config, device)
    torch.jit.script(unet.net).save(str(folder / "unet.pt"))
    bundle = unet_bundle(unet.net, config.reconstructors.unet, folder / "bundle")
    data = config.to_dict()
    data["reconstructors"]["names"] = ["unet", "torchscript", "bundle"]
    data["reconstructors"]["user"] = [{"name": "torchscript", "source": "torchscript", "path": str(folder / "unet.pt")},
                                      {"name": "bundle", "source": "bundle", "path": str(bundle)}]
    declared = from_dict(data)
    return {"built in": unet, **{name: build_reconstructor(name, declared, device) for name in ("torchscript",
                                                                                                  "bundle")}}


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Prints and returns each route's median sweep images/s (the built-in U-Net, TorchScript, MONAI bundle)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/demo.yaml")
    parser.add_argument("--images", type=int, default=256, help="test images timed per route and round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is reported")
    parser.add_argument("--image-size", type=int, help="default: the config's")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = parser.parse_args(argv)
    bench = sweep_bench(args.config, args.images, args.image_size, args.device)
    config, device, test, physics, task_models, level = (bench.config, bench.device, bench.test, bench.physics,
                                                         bench.task_models, bench.level)
    batch = config.evaluation.batch_size
    kept = KeptInputs(test)
    for _ in input_batches(test, physics, level, batch, device, kept=kept):
        pass
    with tempfile.TemporaryDirectory() as folder:
        routes = exported(config, device, Path(folder))
        rates: dict[str, list[float]] = {name: [] for name in routes}
        for recon in routes.values():  # warm-up: three batches (TorchScript's executor optimises on its second call)
            for _ in range(3):
                evaluate_cell(first(test, batch), task_models, physics, recon, level, device, batch, [])
        for _ in range(args.rounds):
            for name, recon in routes.items():
                start = clock(device)
                evaluate_cell(test, task_models, physics, recon, level, device, batch, [], kept=kept)
                rates[name].append(len(test) / (clock(device) - start))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    print(f"{config.name} on {device_name(device)}: {len(test)} test images at {config.cohort.image_size} px, batch "
          f"{batch}, level {level:g} {physics.level_unit}, median of {args.rounds} alternating rounds")
    print(f"{'route':<14}{'sweep img/s':>12}{'÷ built in':>12}  rounds (img/s)")
    for name, rate in medians.items():
        rounds = ", ".join(f"{r:.1f}" for r in rates[name])
        print(f"{name:<14}{rate:>12.1f}{rate / medians['built in']:>12.2f}  {rounds}")
    return medians


if __name__ == "__main__":
    main()
