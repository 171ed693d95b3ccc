"""Typed study configs with a stable hash: the hash keys every stored row and checkpoint.

This module knows no registry: it checks types and values that hold for every study. What a
modality or a reconstructor allows (physics models, cohort sources, labels, names) is checked by
`recon_core.config_loader`, which reads configs for the CLI, the dashboard and the tests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal


class ConfigError(ValueError):
    """A config file or value that cannot describe a study."""


@dataclass(frozen=True)
class BiasKnob:
    """Injects a known per-group difference into a synthetic cohort (off unless listed)."""

    attribute: Literal["sex", "age_band"]
    group: str
    label: str | None = None  # None: every finding
    prevalence: float | None = None  # replaces the label's prevalence in this group
    contrast: float = 1.0  # multiplies the finding's visibility in this group
    size: float = 1.0  # MRI: multiplies the tumour's size in this group


@dataclass(frozen=True)
class CsvSourceConfig:
    """Where a CheXpert/MIMIC-style dataset lives and how its columns are named."""

    csv_path: str
    image_root: str
    path_column: str = "Path"
    sex_column: str = "Sex"
    age_column: str = "Age"
    subject_column: str | None = "subject_id"  # None: each row is its own subject
    split_column: str | None = None  # None: splits drawn per subject from split_fractions
    labels: tuple[str, ...] = ("Cardiomegaly", "Pleural Effusion", "Lung Lesion")
    # Numeric sex codes are only accepted with an explicit mapping, e.g. {"0": "M", "1": "F"}.
    sex_codes: dict[str, str] | None = None
    # Further categorical columns to form groups by (e.g. race); list them in evaluation.attributes too.
    extra_attributes: tuple[str, ...] = ()


@dataclass(frozen=True)
class NiftiSourceConfig:
    """A UCSF-PDGM/BraTS-style MRI folder: one sequence volume and one tumour segmentation per patient."""

    root: str
    metadata_csv: str
    image_pattern: str = "{id}/{id}_FLAIR.nii.gz"  # relative to root; {id} is the patient id
    mask_pattern: str = "{id}/{id}_tumor_segmentation.nii.gz"
    id_column: str = "ID"
    sex_column: str = "Sex"
    age_column: str = "Age"
    grade_column: str = "WHO CNS Grade"
    high_grade_values: tuple[str, ...] = ("4",)  # grade values that count as high grade
    split_column: str | None = None  # None: splits drawn per patient from split_fractions
    slice_range: tuple[int, int] = (60, 130)  # axial slices [start, stop) of every volume
    tumour_labels: tuple[int, ...] = (1, 2, 4)  # segmentation labels that make the tumour mask


@dataclass(frozen=True)
class CohortConfig:
    """Which images and demographics a study uses."""

    source: str = "synthetic"  # 'synthetic' or a real-data source of the modality ('csv' for X-ray, 'nifti' for MRI)
    # X-ray: the real radiograph or a procedural chest; MRI: the MNI152 brain template or a procedural head
    anatomy: str = "radiograph"
    n_subjects: int = 2000
    slices_per_subject: int = 8  # MRI: axial slices per patient (the patient is the unit of statistics)
    image_size: int = 128
    # reconstructor training, diagnostic training, validation (thresholds), test
    split_fractions: tuple[float, float, float, float] = (0.3, 0.4, 0.1, 0.2)
    prevalence: dict[str, float] = field(
        default_factory=lambda: {"cardiomegaly": 0.3, "effusion": 0.25, "nodule": 0.3}
    )
    finding_contrast: float = 1.0
    bias: tuple[BiasKnob, ...] = ()
    age_band_edges: tuple[float, ...] = (60.0,)
    csv: CsvSourceConfig | None = None
    nifti: NiftiSourceConfig | None = None
    # A real dataset's content fingerprint (manifest bytes, every file's size and time, sampled
    # contents), set by `runner.prepare`: changed data is a new run. '' for generated cohorts,
    # and then left out of the hash, so configs hashed before this field keep their hash.
    fingerprint: str = field(default="", metadata={"omit_if_default": True})


@dataclass(frozen=True)
class PhysicsConfig:
    """The acquisition: which forward model of the modality and which levels (X-ray dose, MRI acceleration)."""

    model: str = "projection"  # X-ray: 'projection' or 'sinogram'; MRI: 'kspace'
    # X-ray: incident photons per pixel; MRI (model kspace): accelerations, 1 / sampled fraction
    levels: tuple[float, ...] = (10000.0, 3000.0, 1000.0, 300.0, 100.0)
    attenuation_scale: float = 3.0  # μ = scale · image: image 1 transmits e^-3 ≈ 5 %
    electronic_noise: float = 2.0  # std of Gaussian detector noise, in photons
    n_angles: int = 256  # sinogram model only
    mask: Literal["radial", "cartesian_random", "cartesian_equispaced"] = "radial"  # kspace model only
    centre_fraction: float = 0.08  # Cartesian masks: share of central lines always sampled
    kspace_snr: float | None = None  # complex Gaussian k-space noise (mean intensity / σ); None: off


@dataclass(frozen=True)
class UNetConfig:
    """MONAI UNet denoiser trained on (degraded, clean) pairs across all levels."""

    channels: tuple[int, ...] = (16, 32, 64, 128)
    strides: tuple[int, ...] = (2, 2, 2)
    num_res_units: int = 1
    steps: int = 600
    batch_size: int = 16
    learning_rate: float = 2e-3
    data_consistency: bool = False  # MRI: put the measured k-space samples back after the network


@dataclass(frozen=True)
class TVConfig:
    """Total-variation denoiser; weight = weight_per_sigma × the image's estimated noise std."""

    weight_per_sigma: float = 1.5


@dataclass(frozen=True)
class GANConfig:
    """pix2pix: U-Net generator, PatchGAN discriminator, L1 + adversarial loss (heavy L1, as the reference)."""

    channels: tuple[int, ...] = (16, 32, 64, 128)
    strides: tuple[int, ...] = (2, 2, 2)
    num_res_units: int = 1
    disc_channels: int = 32
    disc_layers: int = 3
    l1_weight: float = 100.0
    steps: int = 600
    batch_size: int = 16
    learning_rate: float = 2e-4
    data_consistency: bool = False  # MRI: put the measured k-space samples back after the generator


DIFFUSION_SAMPLER = "ddim-next-timestep"
"""The diffusion sampler's version: part of its outputs' cache key and of a sampling study's hash."""


@dataclass(frozen=True)
class DiffusionConfig:
    """Conditional diffusion: the degraded image is an input channel; DDIM sampling on MONAI's noise schedules.

    network 'unet': a MONAI UNet that takes the timestep as a constant input map (CPU-sized);
    'diffusion_unet': MONAI's DiffusionModelUNet with timestep embeddings (GPU-sized).
    start 'noise': sampling starts from pure noise at t = T (SR3); 'degraded': from the degraded
    image noised to t₀ = start_fraction·(T − 1) (SDEdit / IR-SDE style), and training draws t in
    [0, t₀] only; 'matched': trained as 'degraded', each image starting at its own t₀ ≤ that one,
    where the chain's noise matches the image's. eta: DDIM's η, 0 deterministic, 1 ancestral DDPM.
    """

    network: Literal["unet", "diffusion_unet"] = "unet"
    # 'epsilon': the standard noise-prediction loss; 'sample': predicts the clean image (CPU-sized training);
    # 'v': predicts v = √ᾱ·ε − √(1−ᾱ)·x₀ (Salimans & Ho), whose x̂₀ tends to x_t as t → 0
    prediction: Literal["epsilon", "sample", "v"] = "epsilon"
    channels: tuple[int, ...] = (16, 32, 64, 128)
    train_timesteps: int = 1000
    schedule: Literal["linear_beta", "scaled_linear_beta", "cosine"] = "cosine"
    sampling_steps: int = 50  # DDIM steps at sampling time, up to the starting timestep
    n_samples: int = 1  # posterior samples per image; > 1 stores their per-pixel std as uncertainty
    steps: int = 800
    batch_size: int = 16
    learning_rate: float = 1e-3
    data_consistency: bool = False  # MRI: make every step's clean-image estimate consistent with k-space
    # 'matched': as 'degraded', each image starting where the chain's noise matches its own (estimated)
    start: Literal["noise", "degraded", "matched"] = field(default="noise", metadata={"omit_if_default": True})
    start_fraction: float = field(default=1.0, metadata={"omit_if_default": True})  # t₀ / (T − 1), start: degraded
    eta: float = field(default=0.0, metadata={"omit_if_default": True})  # DDIM η: 0 deterministic, 1 ancestral

    def start_timestep(self) -> int:
        """t₀, the timestep sampling starts from and training draws up to: T − 1 from noise."""
        return self.train_timesteps - 1 if self.start == "noise" else round(self.start_fraction
                                                                             * (self.train_timesteps - 1))


def _sha256() -> Any:
    """A user model's content hash, set by `runner.prepare` from its file(s): a changed file is a new run."""
    return field(default="", metadata={"omit_if_default": True})


@dataclass(frozen=True)
class UserReconstructorConfig:
    """A reconstructor made outside Tandem, swept like the built-ins under its own `name`.

    `source`: 'torchscript' (a file saved with torch.jit.save, loaded with torch.jit.load, never
    pickle), 'entry_point' ('package.module:factory' importable here; `factory()`, or
    `factory(path)` when `path` is set, returns an nn.Module or a callable), 'bundle' (a MONAI
    bundle folder: configs/inference.json|yaml with `network_def`, and models/model.pt or
    models/model.ts), or 'files' (reconstructions made elsewhere from `export-degraded`'s inputs,
    read back by image id and level from the folder `path`).

    The contract: Tandem hands the model (B, 1, size, size) float32 images mapped from [0, 1] to
    `value_range`; with `inputs: image+kspace` also the measured k-space as (B, 2, H, W) real and
    imaginary parts and the sampling mask (1, 1, H, W). It must return (B, 1, size, size) finite values in
    `value_range`; outputs beyond it by more than `range_tolerance` of its span are a contract
    violation, smaller excursions are clipped (as the built-in networks' outputs are).
    """

    name: str
    source: Literal["torchscript", "entry_point", "bundle", "files"]
    path: str = ""
    entry_point: str = ""
    per_level: dict[str, str] = field(default_factory=dict)  # level → file or folder: one model per dose/acceleration
    value_range: tuple[float, float] = (0.0, 1.0)
    image_size: int = 0  # the size the model takes; 0: the study's image size (others are resampled to it and back)
    inputs: Literal["image", "image+kspace"] = "image"
    range_tolerance: float = 0.05
    sha256: str = _sha256()


@dataclass(frozen=True)
class UserDiagnosticConfig:
    """A diagnostic model made outside Tandem (a classifier of the cohort's findings, or a segmenter).

    Same sources as a user reconstructor (no 'files'). Tandem hands it (B, `channels`, size, size)
    images: [0, 1] images resampled to `image_size`, normalised as (x − mean) / std, repeated over
    the channels. A classifier returns (B, len(labels)) logits or probabilities in the order of
    `labels` (which must include every finding of the cohort); thresholds are `thresholds` where
    given, else chosen on the clean validation split as for the built-in classifier. A segmenter
    returns (B, len(labels), H, W) class scores; `lesion` names the class that is the tumour.
    """

    source: Literal["torchscript", "entry_point", "bundle"]
    path: str = ""
    entry_point: str = ""
    labels: tuple[str, ...] = ()
    outputs: Literal["logits", "probabilities"] = "logits"
    lesion: str = ""
    image_size: int = 0
    normalise: tuple[float, float] = (0.0, 1.0)  # (mean, std)
    channels: int = 1
    thresholds: dict[str, float] = field(default_factory=dict)
    sha256: str = _sha256()


STRATEGIES = ("finetune", "reweight", "eodd", "adversarial")
"""Bias-mitigation strategies a variant `<base>+<strategy>` fine-tunes its base with ('finetune': none, the control)."""


def split_variant(name: str) -> tuple[str, str] | None:
    """(base, strategy) of a mitigation variant's name such as 'unet+eodd'; None for any other name."""
    base, plus, strategy = name.rpartition("+")
    return (base, strategy) if plus and base and strategy in STRATEGIES else None


@dataclass(frozen=True)
class MitigationConfig:
    """How variants `<base>+<strategy>` (in `reconstructors.names`) fine-tune their trained base against bias.

    Every strategy starts from the base's weights and trains `steps` more on the reconstructor-
    training split with the base's own pixel loss: 'finetune' adds nothing (the control that
    separates a strategy from extra training); 'reweight' draws images with weight 1 / (size of
    their `attribute` group); 'eodd' adds `eodd_weight` · (TPR gap + FPR gap) of the frozen
    classifier's soft decisions, sigmoid((logit − logit(threshold)) / temperature), per finding
    (MRI: the soft Dice gap of the frozen segmenter); 'adversarial' trains an adversary to tell the
    `attribute` from the frozen diagnostic model's outputs on the reconstruction and the
    reconstructor to defeat it (`adversarial_weight` · −its cross-entropy, alternating updates).
    """

    attribute: str = "sex"  # sex, age_band or an intersection 'sex×age_band': the groups a strategy balances
    steps: int = 200
    batch_size: int = 32
    learning_rate: float = 2e-4
    # λ of each fairness term, against the pixel loss (MSE ≈ 0.001–0.003 on the X-ray demo's doses): a soft
    # gap of 0.2–0.5 per batch weighs 0.002–0.005 at 0.01; the adversary's cross-entropy (≈ 0.69) 0.003 at 0.005
    eodd_weight: float = 0.01
    temperature: float = 0.1
    adversarial_weight: float = 0.005
    adversary_hidden: int = 32
    adversary_learning_rate: float = 1e-3


@dataclass(frozen=True)
class ReconstructorsConfig:
    """Which reconstructors a sweep runs and their settings; `user` declares the user's own (listed in `names`)."""

    names: tuple[str, ...] = ("none", "tv", "unet")
    unet: UNetConfig = UNetConfig()
    tv: TVConfig = TVConfig()
    gan: GANConfig = GANConfig()
    diffusion: DiffusionConfig = DiffusionConfig()
    user: tuple[UserReconstructorConfig, ...] = field(default=(), metadata={"omit_if_default": True})
    mitigation: MitigationConfig = field(default=MitigationConfig(), metadata={"omit_if_default": True})

    def declared(self, name: str) -> UserReconstructorConfig | None:
        """The user reconstructor declared under `name`, or None for a built-in."""
        return next((u for u in self.user if u.name == name), None)

    def variant(self, name: str) -> tuple[str, str] | None:
        """(base, strategy) of a mitigation variant listed under `name`; None for a built-in or declared model."""
        return None if self.declared(name) is not None else split_variant(name)


@dataclass(frozen=True)
class DiagnosticConfig:
    """Classifier (X-ray findings; MRI grade per slice) and, for MRI, the tumour segmenter; trained on clean images."""

    network: Literal["densenet_small", "densenet121"] = "densenet_small"
    steps: int = 600
    segmenter_channels: tuple[int, ...] = (16, 32, 64, 128)
    segmenter_steps: int = 600
    batch_size: int = 16
    learning_rate: float = 2e-3
    # The user's own models in place of the built-in classifier / segmenter (nothing is trained for them).
    classifier_model: UserDiagnosticConfig | None = field(default=None, metadata={"omit_if_default": True})
    segmenter_model: UserDiagnosticConfig | None = field(default=None, metadata={"omit_if_default": True})


@dataclass(frozen=True)
class EvaluationConfig:
    """How results are measured and summarised."""

    n_bootstrap: int = 1000
    ci_level: float = 0.95
    batch_size: int = 32
    n_examples: int = 6  # test images whose pixels are stored for the dashboard
    min_group_size: int = 10
    # A rate needs this many positives (TPR) / negatives (FPR) in a group, else it has no estimate.
    min_positives: int = field(default=5, metadata={"omit_if_default": True})
    min_negatives: int = field(default=5, metadata={"omit_if_default": True})
    # Groups for fairness: columns, or intersections written 'a×b'.
    attributes: tuple[str, ...] = ("sex", "age_band", "sex×age_band")
    # The networks' arithmetic in the sweep: 'bf16' runs reconstructors and diagnostic models under
    # bfloat16 autocast (faster on a GPU; physics and metrics stay float32). A bf16 run is its own run.
    precision: Literal["float32", "bf16"] = field(default="float32", metadata={"omit_if_default": True})
    # A posterior sample "flips" the segmentation when its tumour Dice differs from the reported
    # reconstruction's by more than this (samplers only).
    sample_dice_change: float = field(default=0.1, metadata={"omit_if_default": True})


@dataclass(frozen=True)
class StudyConfig:
    """One study: cohort × physics × reconstructors × diagnostic model × evaluation."""

    name: str = "demo"
    modality: str = "xray"  # a name in recon_core.modalities (xray, mri)
    seed: int = 0
    cohort: CohortConfig = CohortConfig()
    physics: PhysicsConfig = PhysicsConfig()
    reconstructors: ReconstructorsConfig = ReconstructorsConfig()
    diagnostic: DiagnosticConfig = DiagnosticConfig()
    evaluation: EvaluationConfig = EvaluationConfig()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists)."""
        return json.loads(canonical_json(self))

    def config_hash(self) -> str:
        """Stable 16-hex-digit hash of the whole config; the key of every stored row.

        A study that samples with `diffusion` also hashes the sampler's version
        (`DIFFUSION_SAMPLER`): a run stored by an older sampler is never resumed, and never mixed
        with cells sampled the new way, under the same key.
        """
        if "diffusion" in self.reconstructors.names:
            return stable_hash(self, ("diffusion sampler", DIFFUSION_SAMPLER))
        return stable_hash(self)


def _plain(obj: Any) -> Any:
    """Dataclasses as dicts, all the way down; a field marked `omit_if_default` is left out while at its default."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not (f.metadata.get("omit_if_default") and getattr(obj, f.name) == f.default)}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj


def canonical_json(obj: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, dataclasses as dicts."""
    return json.dumps(_plain(obj), sort_keys=True, separators=(",", ":"), default=list)


def stable_hash(*parts: Any) -> str:
    """sha256 over the canonical JSON of parts, shortened to 16 hex digits."""
    text = "|".join(canonical_json(p) for p in parts)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _build(cls: Any, data: Any, where: str) -> Any:
    """Builds a (nested) dataclass from plain data, checking names and basic types."""
    origin = typing.get_origin(cls)
    args = typing.get_args(cls)
    if dataclasses.is_dataclass(cls):
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping, got {data!r}")
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed {sorted(names)}")
        return cls(**{k: _build(hints[k], v, f"{where}.{k}") for k, v in data.items()})
    if origin in (typing.Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _build(inner[0], data, where)
    if origin is Literal:
        if data not in args:
            raise ConfigError(f"{where}: {data!r} is not one of {list(args)}")
        return data
    if origin is tuple:
        if not isinstance(data, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {data!r}")
        item = args[0]
        return tuple(_build(item, v, f"{where}[{i}]") for i, v in enumerate(data))
    if origin is dict:
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping, got {data!r}")
        return {str(k): _build(args[1], v, f"{where}.{k}") for k, v in data.items()}
    if cls is float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {data!r}")
        return float(data)
    if cls is bool:
        if not isinstance(data, bool):
            raise ConfigError(f"{where}: expected true or false, got {data!r}")
        return data
    if cls is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise ConfigError(f"{where}: expected an integer, got {data!r}")
        return data
    if cls is str:
        if isinstance(data, bool) or not isinstance(data, (str, int, float)):
            raise ConfigError(f"{where}: expected text, got {data!r}")
        return str(data)
    return data


BOUNDS: dict[str, tuple[float, float, bool]] = {
    "seed": (0, math.inf, True),
    "cohort.n_subjects": (1, math.inf, True), "cohort.slices_per_subject": (1, math.inf, True),
    "cohort.finding_contrast": (0, math.inf, True), "cohort.image_size": (32, 256, True),
    "physics.attenuation_scale": (0, math.inf, False), "physics.electronic_noise": (0, math.inf, True),
    "physics.n_angles": (1, math.inf, True), "physics.centre_fraction": (0, 1, False),
    "physics.kspace_snr": (0, math.inf, False), "reconstructors.tv.weight_per_sigma": (0, math.inf, True),
    **{f"reconstructors.{net}.{key}": bound for net in ("unet", "gan", "diffusion")
       for key, bound in (("steps", (1, math.inf, True)), ("batch_size", (1, math.inf, True)),
                          ("learning_rate", (0, 1, False)))},
    "reconstructors.unet.num_res_units": (0, 8, True), "reconstructors.gan.num_res_units": (0, 8, True),
    "reconstructors.gan.disc_channels": (1, math.inf, True), "reconstructors.gan.disc_layers": (1, 6, True),
    "reconstructors.gan.l1_weight": (0, math.inf, True), "reconstructors.diffusion.train_timesteps": (1, 100_000, True),
    "reconstructors.diffusion.start_fraction": (0, 1, False), "reconstructors.diffusion.eta": (0, 1, True),
    "diagnostic.steps": (1, math.inf, True), "diagnostic.segmenter_steps": (1, math.inf, True),
    "diagnostic.batch_size": (1, math.inf, True), "diagnostic.learning_rate": (0, 1, False),
    "evaluation.n_bootstrap": (100, 1_000_000, True), "evaluation.ci_level": (0.5, 0.999, False),
    "evaluation.batch_size": (1, math.inf, True), "evaluation.n_examples": (0, 1000, True),
    "evaluation.min_group_size": (1, math.inf, True),
    "evaluation.min_positives": (1, math.inf, True),
    "evaluation.min_negatives": (1, math.inf, True),
    "evaluation.sample_dice_change": (0, 1, False),
    "reconstructors.mitigation.steps": (1, math.inf, True),
    "reconstructors.mitigation.batch_size": (2, math.inf, True),
    "reconstructors.mitigation.learning_rate": (0, 1, False),
    "reconstructors.mitigation.eodd_weight": (0, math.inf, True),
    "reconstructors.mitigation.temperature": (0, math.inf, False),
    "reconstructors.mitigation.adversarial_weight": (0, math.inf, True),
    "reconstructors.mitigation.adversary_hidden": (1, 4096, True),
    "reconstructors.mitigation.adversary_learning_rate": (0, 1, False),
}
"""Numeric fields and their ranges (low, high, whether the low end is allowed); the high end is always allowed.

100 resamples at least: fewer gives intervals and p-values too coarse to read (the smallest
p-value is 1 / (n + 1)); a level of confidence below 0.5 is a mistake for 1 − α.
"""
MIN_SPLIT_SUBJECTS = 8
"""A generated cohort gives every split (training, diagnostic training, validation, test) this many subjects."""


def _value(config: StudyConfig, key: str) -> Any:
    """The value of a dotted key ('evaluation.n_bootstrap') of a config."""
    value: Any = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


def _check_numbers(config: StudyConfig) -> None:
    """Every numeric field finite and within its range (`BOUNDS`), every level finite and listed once."""
    for key, (low, high, low_allowed) in BOUNDS.items():
        value = _value(config, key)
        if value is None:
            continue
        if not math.isfinite(value) or value > high or value < low or (value == low and not low_allowed):
            low_text = f"≥ {low:g}" if low_allowed else f"> {low:g}"
            high_text = "" if math.isinf(high) else f" and ≤ {high:g}"
            raise ConfigError(f"{key}: {value!r} must be a finite number {low_text}{high_text}")
    levels = config.physics.levels
    if any(not math.isfinite(level) for level in levels):
        raise ConfigError(f"physics.levels: {list(levels)} must all be finite numbers")
    if len(set(levels)) != len(levels):
        raise ConfigError(f"physics.levels: {list(levels)} lists a level twice")
    for key, values in (("reconstructors.names", config.reconstructors.names),
                        ("evaluation.attributes", config.evaluation.attributes)):
        if len(set(values)) != len(values):
            raise ConfigError(f"{key}: {list(values)} names one twice")
    if not config.evaluation.attributes:
        raise ConfigError("evaluation.attributes: name at least one attribute to compare groups by (sex, age_band)")
    if not config.reconstructors.names:
        raise ConfigError("reconstructors.names: name at least one reconstructor (none: the degraded image as is)")
    for name, rate in config.cohort.prevalence.items():
        if not 0 < rate < 1:
            raise ConfigError(f"cohort.prevalence.{name}: {rate!r} must be a share between 0 and 1")
    for i, knob in enumerate(config.cohort.bias):
        key = f"cohort.bias[{i}]"
        if knob.prevalence is not None and not 0 < knob.prevalence < 1:
            raise ConfigError(f"{key}.prevalence: {knob.prevalence!r} must be a share between 0 and 1")
        for field_name in ("contrast", "size"):
            value = getattr(knob, field_name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{key}.{field_name}: {value!r} must be a finite number ≥ 0")
        groups = {"sex": ("F", "M")}.get(knob.attribute)
        if groups is not None and knob.group not in groups:
            raise ConfigError(f"{key}.group: {knob.group!r} is not a group of {knob.attribute} {list(groups)}")


def _check_networks(config: StudyConfig) -> None:
    """Channel lists that build, and an image size each network of the study halves cleanly at every stride."""
    size = config.cohort.image_size
    nets = {"unet": config.reconstructors.unet, "gan": config.reconstructors.gan}
    for name, settings in nets.items():
        key = f"reconstructors.{name}"
        if not settings.channels or min(settings.channels) < 1:
            raise ConfigError(f"{key}.channels: {list(settings.channels)} must be one or more positive widths")
        if len(settings.strides) != len(settings.channels) - 1 or any(s < 1 for s in settings.strides):
            raise ConfigError(f"{key}.strides: {list(settings.strides)} needs one positive stride per channel "
                              f"after the first ({len(settings.channels) - 1})")
        if name in config.reconstructors.names and size % math.prod(settings.strides):
            raise ConfigError(f"cohort.image_size: {size} is not divisible by {math.prod(settings.strides)}, the "
                              f"product of {key}.strides {list(settings.strides)}; pick a multiple of it")
    for key, channels in (("reconstructors.diffusion.channels", config.reconstructors.diffusion.channels),
                          ("diagnostic.segmenter_channels", config.diagnostic.segmenter_channels)):
        if not channels or min(channels) < 1:
            raise ConfigError(f"{key}: {list(channels)} must be one or more positive widths")
    if "diffusion" in config.reconstructors.names and size % 2 ** (len(config.reconstructors.diffusion.channels) - 1):
        raise ConfigError(f"cohort.image_size: {size} is not divisible by "
                          f"{2 ** (len(config.reconstructors.diffusion.channels) - 1)}, which the diffusion "
                          "network's channels need (one halving per channel after the first)")


def _check_source(key: str, source: str, path: str, entry_point: str, per_level: dict[str, str]) -> None:
    """A user model names where it lives as its source needs: a path (or one per level), or an entry point."""
    if source == "entry_point":
        module, _, factory = entry_point.partition(":")
        if not (module and factory):
            raise ConfigError(f"{key}.entry_point: {entry_point!r} must be 'package.module:factory' (an importable "
                              "module and a function in it that returns the model)")
        if per_level:
            raise ConfigError(f"{key}.per_level: an entry point's model is handed the level; one serves every level")
        return
    if entry_point:
        raise ConfigError(f"{key}.entry_point: only for source 'entry_point', not {source!r}")
    if bool(path) == bool(per_level):
        raise ConfigError(f"{key}: source {source!r} needs either path (one model for every level) or per_level "
                          "(a model per level), not " + ("both" if path else "neither"))


def _check_user_models(config: StudyConfig) -> None:
    """The user's models: sources that say where they live, ranges that are ranges, one model per level."""
    levels = {float(level) for level in config.physics.levels}
    for i, user in enumerate(config.reconstructors.user):
        key = f"reconstructors.user[{i}]"
        if not user.name or not user.name.replace("_", "").replace("-", "").replace("+", "").isalnum():
            raise ConfigError(f"{key}.name: {user.name!r} must be a short name of letters, digits, '_', '-' or '+'")
        _check_source(key, user.source, user.path, user.entry_point, user.per_level)
        if user.source == "files" and user.per_level:
            raise ConfigError(f"{key}.per_level: reconstructions read from files live in one folder (path)")
        low, high = user.value_range
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ConfigError(f"{key}.value_range: {[low, high]} must be two finite numbers, low < high")
        if not (math.isfinite(user.range_tolerance) and user.range_tolerance >= 0):
            raise ConfigError(f"{key}.range_tolerance: {user.range_tolerance!r} must be a finite number ≥ 0")
        if user.image_size and not 8 <= user.image_size <= 1024:
            raise ConfigError(f"{key}.image_size: {user.image_size} must be 0 (the study's size) or within 8–1024")
        given = {}
        for text in user.per_level:
            try:
                level = float(text)
            except ValueError:
                raise ConfigError(f"{key}.per_level: {text!r} is not a level (a number)") from None
            if level in given:  # '300' and '3e2': one of the two models would be dropped unsaid
                raise ConfigError(f"{key}.per_level: {given[level]!r} and {text!r} name the same level")
            given[level] = text
        if user.per_level and set(given) != levels:
            missing = sorted(levels - set(given))
            extra = sorted(set(given) - levels)
            raise ConfigError(f"{key}.per_level: needs one model for each level of physics.levels; "
                              + (f"missing {[f'{v:g}' for v in missing]}" if missing else
                                 f"{[given[v] for v in extra]} not a level of the study"))
        if user.name not in config.reconstructors.names:
            raise ConfigError(f"{key}: {user.name!r} is declared but not in reconstructors.names; list it there "
                              "to sweep it (or remove the declaration)")
    names = [user.name for user in config.reconstructors.user]
    if len(set(names)) != len(names):
        raise ConfigError(f"reconstructors.user: {names} declares a name twice")
    _check_variants(config)
    for role in ("classifier_model", "segmenter_model"):
        user = getattr(config.diagnostic, role)
        if user is None:
            continue
        key = f"diagnostic.{role}"
        _check_source(key, user.source, user.path, user.entry_point, {})
        if not user.labels or len(set(user.labels)) != len(user.labels):
            raise ConfigError(f"{key}.labels: {list(user.labels)} must name the model's outputs in order, each once")
        if role == "segmenter_model" and user.lesion not in user.labels:
            raise ConfigError(f"{key}.lesion: {user.lesion!r} must be one of its classes {list(user.labels)}")
        mean, std = user.normalise
        if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
            raise ConfigError(f"{key}.normalise: {[mean, std]} must be (mean, std) with a finite std > 0")
        if not 1 <= user.channels <= 16:
            raise ConfigError(f"{key}.channels: {user.channels} must be within 1–16")
        if user.image_size and not 8 <= user.image_size <= 1024:
            raise ConfigError(f"{key}.image_size: {user.image_size} must be 0 (the study's size) or within 8–1024")
        for label, threshold in user.thresholds.items():
            if label not in user.labels or not 0 < threshold < 1:
                raise ConfigError(f"{key}.thresholds.{label}: needs one of its labels {list(user.labels)} and a "
                                  f"probability between 0 and 1, got {threshold!r}")


def _check_variants(config: StudyConfig) -> None:
    """Mitigation variants: a base listed beside them (the comparison is against it) that trains a network."""
    recons = config.reconstructors
    for i, user in enumerate(recons.user):
        if split_variant(user.name) is not None:
            raise ConfigError(f"reconstructors.user[{i}].name: {user.name!r} reads as a mitigation variant "
                              "'<base>+<strategy>'; give your reconstructor another name")
    for name in recons.names:
        parts = recons.variant(name)
        if parts is None:
            if "+" in name and recons.declared(name) is None:
                raise ConfigError(f"reconstructors.names: {name!r} is not a mitigation variant '<base>+<strategy>' "
                                  f"(strategies: {list(STRATEGIES)}) nor a declared user reconstructor")
            continue
        base = parts[0]
        if base not in recons.names:
            raise ConfigError(f"reconstructors.names: variant {name!r} fine-tunes {base!r}; list {base!r} too, "
                              "so the variant is compared with it on the same images")
        if base in ("none", "tv", "zero_filled", "diffusion") or recons.variant(base) is not None:
            raise ConfigError(f"reconstructors.names: variant {name!r}: {base!r} has no network mitigation can "
                              "fine-tune (unet, gan, or a declared torchscript / entry-point model)")
        declared = recons.declared(base)
        if declared is not None and (declared.source not in ("torchscript", "entry_point") or declared.per_level
                                     or declared.inputs != "image"):
            raise ConfigError(f"reconstructors.names: variant {name!r}: user reconstructor {base!r} must be one "
                              "torchscript or entry-point network for every level taking the image alone to be "
                              "fine-tuned")
    if any(recons.variant(n) is not None for n in recons.names):
        known = {"sex", "age_band"} | set(config.cohort.csv.extra_attributes if config.cohort.csv else ())
        unknown = [part for part in recons.mitigation.attribute.split("×") if part not in known]
        if unknown:
            raise ConfigError(f"reconstructors.mitigation.attribute: {recons.mitigation.attribute!r} names unknown "
                              f"column {unknown[0]!r}; known: {sorted(known)}")


def check_values(config: StudyConfig) -> StudyConfig:
    """Rejects values no study of any modality can run with, naming the offending key."""
    _check_numbers(config)
    _check_networks(config)
    _check_user_models(config)
    if config.cohort.source == "synthetic":
        smallest = min(config.cohort.split_fractions) * config.cohort.n_subjects
        if smallest < MIN_SPLIT_SUBJECTS:
            need = math.ceil(MIN_SPLIT_SUBJECTS / min(config.cohort.split_fractions))
            raise ConfigError(f"cohort.n_subjects: {config.cohort.n_subjects} is too few for split_fractions "
                              f"{list(config.cohort.split_fractions)}: every split needs {MIN_SPLIT_SUBJECTS} "
                              f"subjects, so at least {need}")
    diffusion = config.reconstructors.diffusion
    if diffusion.start == "noise" and diffusion.start_fraction != 1:
        raise ConfigError(f"reconstructors.diffusion.start_fraction: {diffusion.start_fraction!r} is for start: "
                          "degraded or matched; from noise sampling starts at the last timestep")
    start = diffusion.start_timestep()
    if start < 1:
        raise ConfigError(f"reconstructors.diffusion.start_fraction: {diffusion.start_fraction!r} of "
                          f"{diffusion.train_timesteps - 1} timesteps rounds to t₀ = 0: nothing to sample")
    if not 1 <= diffusion.sampling_steps <= start + 1:
        raise ConfigError(f"reconstructors.diffusion.sampling_steps: {diffusion.sampling_steps} must be within "
                          f"1–{start + 1} (the timesteps 0–{start} the sampler starts from)")
    if diffusion.n_samples < 1:
        raise ConfigError("reconstructors.diffusion.n_samples: at least one sample per image")
    if config.cohort.slices_per_subject < 1:
        raise ConfigError("cohort.slices_per_subject: at least one slice per subject")
    if not config.physics.levels:
        raise ConfigError("physics.levels: at least one dose level is needed")
    fractions = config.cohort.split_fractions
    if len(fractions) != 4 or any(not f > 0 for f in fractions) or not abs(sum(fractions) - 1) <= 1e-6:
        raise ConfigError(f"cohort.split_fractions: {fractions} must be 4 positive numbers summing to 1")
    edges = list(config.cohort.age_band_edges)
    if not edges or edges != sorted(set(edges)) or not all(0 < e < 130 for e in edges):
        raise ConfigError(f"cohort.age_band_edges: {edges} must be one or more strictly increasing ages "
                          "between 0 and 130")
    csv = config.cohort.csv
    if csv is not None:
        for key, values in (("labels", csv.labels), ("extra_attributes", csv.extra_attributes)):
            if len(set(values)) != len(values) or (key == "labels" and not values):
                need = "one or more finding columns, each once" if key == "labels" else "each column once"
                raise ConfigError(f"cohort.csv.{key}: {list(values)} must name {need}")
    known = {"sex", "age_band"} | set(csv.extra_attributes if csv else ())
    for attribute in config.evaluation.attributes:
        unknown = [part for part in attribute.split("×") if part not in known]
        if unknown:
            raise ConfigError(f"evaluation.attributes: {attribute!r} names unknown column {unknown[0]!r}; "
                              f"known: {sorted(known)} (add real-data columns to cohort.csv.extra_attributes)")
    return config


def parse_config(data: dict[str, Any] | None) -> StudyConfig:
    """Typed StudyConfig from a plain dict, its types and modality-independent values checked."""
    return check_values(_build(StudyConfig, data or {}, "config"))
