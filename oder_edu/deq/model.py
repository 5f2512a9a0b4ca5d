"""A RED-DEQ / ODER model's ``ModelConfig`` and the one way to ``build`` it (τ from L_g), ``save`` it
(atomic, no overwrite unless ``force``) and ``load_model`` it (e.g. ``"deq_ct_full"``, sha256-checked)."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields

from .. import checkpoints, checks
from ..denoisers import DnCNN, from_config, load_denoiser
from ..physics.samplers import SAMPLERS
from ..problems import APPS, SETTINGS
from .layer import BACKWARDS
from .red_deq import MINIBATCH_STEPS, RESAMPLE, REDDEQ
from .solvers import SOLVERS

METHODS = ("full", "oder", "unrolled")


@dataclass
class ModelConfig:
    """A RED-DEQ / ODER model and its problem (``app`` ... ``snr_db``; None: ``problems.SETTINGS``).
    ``method``: "full" (RED-DEQ), "oder" (minibatch at ``batch_ratio``; variance-reduced with a snapshot
    every ``snapshot_every`` maps, or the plain online iteration with 0) or "unrolled" (``unroll_iter`` RED
    steps); R_θ starts from ``pretrained`` (None: a fresh ``DnCNN(depth, width)``), τ at ``tau_over_L`` · L_g,
    learned within a factor ``tau_spread`` of it. Training solves to ``tol`` within ``max_iter`` maps, the
    test call (evaluation mode) to ``eval_tol`` within ``eval_max_iter``. A minibatch map steps with the
    bound L_b or with L_g (``minibatch_step``, REDDEQ's module docstring)."""

    app: str = "ct"
    image_size: int | None = None
    num_blocks: int | None = None
    snr_db: float | None = None
    method: str = "full"
    batch_ratio: float = 1.0
    resample: str = "iteration"
    sampler: str = "stratified"
    snapshot_every: int = 4
    sigma: float = 0.05
    tau_over_L: float = 0.1  # τ/L_g at the start of training
    tau_spread: float = 4.0
    pretrained: str | None = "dncnn_small"
    depth: int = 5
    width: int = 16
    solver: str = "anderson"
    backward: str = "implicit"
    max_iter: int = 100
    tol: float = 1e-4
    backward_max_iter: int = 40
    backward_tol: float = 2e-3  # Anderson's backward residual stalls near 1e-3 on CT 128²/360 (m = 5 or 10)
    unroll_iter: int = 10
    # The test procedure (REDDEQ's docstring): with λ up to 0.99, tol = 1e-4 leaves the output up to 1 % from
    # the fixed point (measured on MRI's models: 0.9 dB); 1e-5 leaves 0.1 %. Checkpoints saved before these
    # fields existed read these defaults.
    eval_max_iter: int = 300
    eval_tol: float = 1e-5
    minibatch_step: str = "bound"  # checkpoints saved before this field existed stepped with the bound

    def __post_init__(self):
        setting = SETTINGS[checks.choice("app", self.app, APPS)]
        self.image_size = setting.image_size if self.image_size is None else checks.integer("image_size", self.image_size, 8)
        self.num_blocks = setting.num_blocks if self.num_blocks is None else checks.integer("num_blocks", self.num_blocks, 1)
        self.snr_db = setting.snr_db if self.snr_db is None else checks.number("snr_db", self.snr_db)
        checks.choice("method", self.method, METHODS)
        self.batch_ratio = checks.ratio("batch_ratio", self.batch_ratio)
        if (self.method == "oder") != (self.batch_ratio < 1):
            raise ValueError(f"method {self.method!r} with batch_ratio {self.batch_ratio}: ODER needs a ratio below 1, "
                             f"full and unrolled use all blocks (1)")
        checks.choice("resample", self.resample, RESAMPLE)
        checks.choice("sampler", self.sampler, tuple(SAMPLERS))
        checks.choice("solver", self.solver, tuple(SOLVERS))
        checks.choice("backward", self.backward, BACKWARDS)
        checks.choice("minibatch_step", self.minibatch_step, MINIBATCH_STEPS)
        if self.pretrained is not None:  # a name or path, stored as a string (the config is saved as data)
            if not isinstance(self.pretrained, (str, os.PathLike)):
                raise TypeError(f"pretrained must be a manifest name, a path to a .pt file or None, "
                                f"got {self.pretrained!r} ({type(self.pretrained).__name__})")
            self.pretrained = os.fspath(self.pretrained)
        # stored as plain Python numbers: numpy scalars could not be loaded back from a weight file
        self.sigma = checks.number("sigma", self.sigma, minimum=0)
        self.tau_over_L = checks.number("tau_over_L", self.tau_over_L, positive=True)
        self.tau_spread = checks.number("tau_spread", self.tau_spread, minimum=1)
        self.snapshot_every = checks.integer("snapshot_every", self.snapshot_every, 0)
        for name in ("depth", "width", "max_iter", "backward_max_iter", "unroll_iter", "eval_max_iter"):
            setattr(self, name, checks.integer(name, getattr(self, name), 1))
        for name in ("tol", "backward_tol", "eval_tol"):
            setattr(self, name, checks.number(name, getattr(self, name), minimum=0))

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        """The config saved beside a checkpoint; keys of earlier versions are read under today's names
        (``RENAMED``), and an unknown key raises rather than silently falling back to a default."""
        values = {RENAMED.get(key, key): value for key, value in values.items()}
        unknown = sorted(set(values) - {f.name for f in fields(cls)} - SAVED_BESIDE)
        if unknown:
            raise ValueError(f"unknown ModelConfig fields {unknown}: a checkpoint from a newer oder-edu?")
        return cls(**{key: value for key, value in values.items() if key not in SAVED_BESIDE})


RENAMED = {"tau_init": "tau_over_L"}  # the field's name until 2026-12 (it always meant τ/L_g)
SAVED_BESIDE = {"prior"}  # stored with the config by ``save``: the prior's architecture
# Fields added since checkpoints shipped: a file without them reads the default.
ADDED = {"eval_max_iter", "eval_tol", "minibatch_step"}


def prior(config: ModelConfig) -> DnCNN:
    """The prior R_θ training starts from: the ``pretrained`` denoiser, or a fresh ``DnCNN(1, depth, width)``."""
    if config.pretrained is None:
        return DnCNN(1, config.depth, config.width)
    return load_denoiser(config.pretrained, device="cpu").train()


def build(config: ModelConfig, A=None, *, denoiser: DnCNN | None = None, tau: float | None = None) -> REDDEQ:
    """A ``REDDEQ`` for ``config``: the starting ``prior`` and τ = ``tau_over_L`` · ||A||², or a
    given ``denoiser`` and ``tau`` (a saved model's, whose weights the caller then loads)."""
    if not isinstance(config, ModelConfig):
        raise TypeError(f"config must be a ModelConfig, got {type(config).__name__}")
    if tau is None:
        if A is None:
            raise ValueError("build needs the operator A (to scale τ by L_g) or an explicit tau")
        tau = config.tau_over_L * A.norm() ** 2
    same = ("batch_ratio", "resample", "sampler", "tau_spread", "max_iter", "tol", "backward_max_iter", "backward_tol",
            "unroll_iter", "eval_max_iter", "eval_tol", "minibatch_step")
    return REDDEQ(prior(config) if denoiser is None else denoiser, config.sigma, tau, solver=SOLVERS[config.solver],
                  backward="unrolled" if config.method == "unrolled" else config.backward,
                  snapshot_every=config.snapshot_every or None, **{name: getattr(config, name) for name in same})


def save(path, model: REDDEQ, config: ModelConfig, metrics: dict | None = None, force: bool = False):
    """Save the weights, config and prior architecture (``checkpoints.save_state``: atomic, no overwrite)."""
    if not isinstance(model, REDDEQ) or not isinstance(config, ModelConfig):
        raise TypeError(f"model must be a REDDEQ and config a ModelConfig, got {type(model).__name__} and "
                        f"{type(config).__name__}")
    return checkpoints.save_state(path, "red_deq", {**asdict(config), "prior": model.denoiser.config()}, model,
                                  metrics, force=force)


def load_model(source, device=None) -> REDDEQ:
    """A trained ``REDDEQ`` (manifest name or ``.pt`` path, sha256-checked) in eval mode, with its
    ``ModelConfig`` as ``model.config``, from which ``problems.make_problem`` rebuilds its problem."""
    from ..device import as_device

    state = checkpoints.load_state(source, kind="red_deq")
    config = ModelConfig.from_dict(state["config"])
    model = build(config, denoiser=from_config(state["config"]["prior"]), tau=state["state_dict"]["tau_center"].item())
    model.load_state_dict(state["state_dict"])
    model.config = config
    return model.to(as_device(device)).eval()
