"""Command line: `python -m recon_core train|sweep|demo|report|fastmri-quality|export-degraded|import-reconstructions`
over a YAML study config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from recon_core import paths, results
from recon_core.config import ConfigError, StudyConfig
from recon_core.config_loader import load_config
from recon_core.device import pick_device
from recon_core.progress import Progress, file_reporter
from recon_core.store import CLEAN, Store, queries

DEMO_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"


def _bar() -> Progress:
    """A tqdm bar per stage."""
    state: dict = {"stage": None, "bar": None}

    def report(stage: str, done: int, total: int) -> None:
        if stage != state["stage"]:
            if state["bar"] is not None:
                state["bar"].close()
            state["stage"], state["bar"] = stage, tqdm(total=total, desc=stage, unit="it", leave=False,
                                                        file=sys.stderr)
        bar = state["bar"]
        bar.total = total
        bar.update(done - bar.n)

    return report


def _config(args: argparse.Namespace) -> StudyConfig:
    """The config as it runs: read, validated, its data checked and fingerprinted (a changed dataset is a new run)."""
    from recon_core.runner import prepare

    return prepare(load_config(args.config or DEMO_CONFIG))


def _progress(args: argparse.Namespace) -> Progress:
    bar = _bar()
    return file_reporter(args.progress_file, bar) if args.progress_file else bar


def _check_cluster(args: argparse.Namespace) -> None:
    """With `--executor ray`, an address that does not answer is said before anything loads or trains."""
    if args.executor == "ray":
        from recon_core.runner.ray_executor import check_reachable

        check_reachable(args.ray_address)


def cmd_train(args: argparse.Namespace) -> int:
    from recon_core.runner import train_models

    _check_cluster(args)
    config = _config(args)
    device, progress = pick_device(args.device), _progress(args)
    ray = args.executor == "ray"
    models = train_models(config, paths.checkpoint_dir(), device, progress, fit_reconstructors=not ray)
    if ray:
        from recon_core.runner.ray_executor import fit_on_ray

        fit_on_ray(config, paths.checkpoint_dir(), device, args.ray_address, progress)
    print(f"trained {config.name} ({config.config_hash()}): thresholds "
          + ", ".join(f"{k}={v:.3f}" for k, v in models.thresholds.items()))
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from recon_core.runner import run_study

    _check_cluster(args)
    config = _config(args)
    store = Store(args.store)
    cells = None
    if args.executor == "ray":
        from recon_core.runner.ray_executor import on_ray  # Ray is imported only by those who ask for it

        cells = on_ray(args.ray_address)
    key = run_study(config, store, paths.checkpoint_dir(), pick_device(args.device), _progress(args), cells=cells)
    print(f"study {config.name} ({key}) stored in {store.path}")
    print(report_text(store, key))
    return 0


def report_text(store: Store, key: str) -> str:
    """Headline table of a run: per cell its quality and task metrics, the first gap by sex and what was added."""
    run = results.run_view(store, key)
    table = results.headline_table(store, run)
    if table.empty:
        return "no results stored for this run yet"
    columns = list(table.columns[2:])
    widths = [max(len(c), *(len(v) for v in table[c])) + 2 for c in columns]
    lines = [f"{'reconstructor':<14}{run.level.name:>13}  " + "".join(f"{c:<{w}}" for c, w in zip(columns, widths,
                                                                                                  strict=True))]
    for r in table.itertuples(index=False):
        level = "—" if r[0] == CLEAN else f"{r[1]:g}"
        lines.append(f"{r[0]:<14}{level:>13}  " + "".join(f"{v:<{w}}" for v, w in zip(r[2:], widths, strict=True)))
    return "\n".join(lines)


def cmd_report(args: argparse.Namespace) -> int:
    store = Store(args.store)
    key = args.run or _config(args).config_hash()
    runs = queries.runs(store)
    if key not in set(runs.config_hash):
        print(f"no run {key} in {store.path}; stored runs: {list(runs.config_hash)}", file=sys.stderr)
        return 2
    row = runs[runs.config_hash == key].iloc[0]
    print(f"run {row['name']} ({key}), {results.modality_title(row.modality)}, status {row.status}, "
          f"{row.cells_done} cells done")
    print(report_text(store, key))
    return 0


def cmd_fastmri_quality(args: argparse.Namespace) -> int:
    """Image quality of MRI reconstructors on fastMRI files, per acceleration: volume PSNR/NMSE, mean slice SSIM."""
    import numpy as np
    import torch

    from recon_core.cohorts.fastmri_h5 import read_fastmri
    from recon_core.metrics.image_quality import image_quality, volume_quality
    from recon_core.modalities import get_modality
    from recon_core.models.contract import TrainableModel
    from recon_core.reconstructors import build_reconstructor

    config = load_config(args.config) if args.config else load_config(DEMO_CONFIG.with_name("demo-mri.yaml"))
    physics = get_modality(config.modality).build_physics(config)
    if not physics.measures_kspace:
        raise ConfigError(f"{args.config}: fastmri-quality needs a config with k-space physics (physics.model: kspace)")
    device = pick_device(args.device)
    rows = []
    for file in args.files:
        images = torch.from_numpy(read_fastmri(file, config.cohort.image_size)[:, None])
        ids = [f"{Path(file).stem}-s{k}" for k in range(len(images))]
        for name in args.reconstructors:
            recon = build_reconstructor(name, config, device)
            if isinstance(recon, TrainableModel):
                recon.load(paths.checkpoint_dir())
            for level in config.physics.levels:
                measurement = physics.measure(images, level, ids)
                output = recon.reconstruct(physics.to_image(measurement, level), physics, level, measurement)
                quality = {k: v.numpy() for k, v in image_quality(output, images).items()}
                volume = volume_quality(quality["mse"].mean(), quality["signal"].mean())
                rows.append((Path(file).name, name, level, float(volume["psnr_volume"]),
                             float(np.mean(quality["ssim"])), float(volume["nmse_volume"])))
    print(f"{'file':<28}{'reconstructor':<14}{'accel':>6}{'PSNR dB':>10}{'SSIM':>8}{'NMSE':>9}")
    for file, name, level, p, s, n in rows:
        print(f"{file:<28}{name:<14}{level:>6g}{p:>10.2f}{s:>8.3f}{n:>9.4f}")
    return 0


def cmd_export_degraded(args: argparse.Namespace) -> int:
    """Writes the test split's degraded inputs per level (and MRI k-space and masks) with a manifest."""
    from recon_core.runner.exchange import export_degraded

    out = Path(args.out).expanduser()
    manifest = export_degraded(load_config(args.config or DEMO_CONFIG), out, args.format, _bar())
    print(f"exported {len(manifest['image_ids'])} test images × {len(manifest['levels'])} levels "
          f"({', '.join(manifest['levels'])} {manifest['level_unit']}) of {manifest['config']} as {args.format} "
          f"to {out}")
    print(manifest["write_back"])
    return 0


def cmd_import_reconstructions(args: argparse.Namespace) -> int:
    """Checks a folder of reconstructions made elsewhere, then sweeps it as reconstructor `--name`."""
    from recon_core.confinement import root_folder
    from recon_core.runner import run_study
    from recon_core.runner.exchange import check_reconstructions, config_snippet, with_imported

    folder = root_folder(args.from_folder, "--from folder")
    config = with_imported(load_config(args.config or DEMO_CONFIG), args.name, folder, tuple(args.value_range))
    check_reconstructions(config, args.name)
    store = Store(args.store)
    key = run_study(config, store, paths.checkpoint_dir(), pick_device(args.device), _progress(args))
    print(f"study {config.name} ({key}) with {args.name!r} from {folder} stored in {store.path}")
    print("To keep these reconstructions in this config's runs, add to it:")
    print(config_snippet(config, args.name), end="")
    print(report_text(store, key))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; errors in input print one clear line and exit 2."""
    parser = argparse.ArgumentParser(prog="python -m recon_core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, text in (("train", cmd_train, "train the classifier and reconstructors"),
                             ("sweep", cmd_sweep, "train if needed, then sweep reconstructors × levels"),
                             ("demo", cmd_sweep, "build the embedded demo study (configs/demo.yaml)"),
                             ("report", cmd_report, "print the headline table of a stored run")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", help="YAML study config (default: configs/demo.yaml)")
        p.add_argument("--store", default=str(paths.default_store_path()), help="DuckDB store file")
        p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
        p.add_argument("--progress-file", help="also write progress as JSON here (the dashboard polls it)")
        if name == "report":
            p.add_argument("--run", help="config hash of the run (default: the config's)")
        else:
            p.add_argument("--executor", choices=["local", "ray"], default="local",
                           help="local (this process) or ray (fits and cells as Ray tasks; this process writes)")
            p.add_argument("--ray-address", help="an existing Ray cluster (e.g. ray://head:10001 or auto); "
                           "default: start a local Ray")
        p.set_defaults(func=func)
    p = sub.add_parser("fastmri-quality", help="image quality of MRI reconstructors on fastMRI HDF5 files")
    p.add_argument("files", nargs="+", help="fastMRI .h5 files (kspace, reconstruction_rss/esc)")
    p.add_argument("--config", help="MRI study config for size, mask and accelerations (default: demo-mri.yaml)")
    p.add_argument("--reconstructors", nargs="+", default=["zero_filled", "tv"],
                   help="registered reconstructors; trained ones load the config's checkpoints")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_fastmri_quality)
    p = sub.add_parser("export-degraded", help="write the test split's degraded inputs for a model run elsewhere")
    p.add_argument("--config", help="YAML study config (default: configs/demo.yaml)")
    p.add_argument("--out", required=True, help="a new or empty folder for <level>/<image id> files and manifest.json")
    p.add_argument("--format", default="npy", choices=["npy", "nifti", "png"],
                   help="npy (float32), nifti (.nii.gz, float32) or png (16-bit grayscale)")
    p.set_defaults(func=cmd_export_degraded)
    p = sub.add_parser("import-reconstructions", help="check reconstructions made elsewhere and sweep them")
    p.add_argument("--config", help="the YAML study config the inputs were exported with (default: demo.yaml)")
    p.add_argument("--from", dest="from_folder", required=True,
                   help="folder of <level>/<image id>.npy|.nii.gz|.png reconstructions")
    p.add_argument("--name", required=True, help="the reconstructor's name in the store and the dashboard")
    p.add_argument("--value-range", nargs=2, type=float, default=[0.0, 1.0], metavar=("LO", "HI"),
                   help="the range the reconstructions' values span (default 0 1)")
    p.add_argument("--store", default=str(paths.default_store_path()), help="DuckDB store file")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--progress-file", help="also write progress as JSON here (the dashboard polls it)")
    p.set_defaults(func=cmd_import_reconstructions)
    args = parser.parse_args(argv)
    if getattr(args, "ray_address", None) and args.executor != "ray":
        parser.error("--ray-address needs --executor ray")
    from recon_core.cohorts import CohortError
    from recon_core.confinement import OutsideRootsError
    from recon_core.diagnostics.thresholds import ThresholdError
    from recon_core.mitigation.attributes import MitigationError
    from recon_core.models.checkpoints import CheckpointError
    from recon_core.models.user_models import UserModelError
    from recon_core.physics import PhysicsError
    from recon_core.registry import UnknownNameError
    from recon_core.runner.study import ExecutorError
    from recon_core.store import StoreError
    try:
        return args.func(args)
    except (ConfigError, CohortError, PhysicsError, CheckpointError, UnknownNameError,
            ThresholdError, StoreError, UserModelError, OutsideRootsError, ExecutorError, MitigationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
