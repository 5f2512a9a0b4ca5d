"""Real images: the validation slices of ``data/``, natural-image patches for training, and the
training mix of both with the procedural phantoms. Medical slices are for validation only:
nothing here trains on them. All images are ``[n, 1, H, W]`` float32 in [0, 1] on the CPU; random
functions take an explicit ``torch.Generator``.
"""

from __future__ import annotations

import functools
import importlib.resources
import math

import numpy as np
import torch
import torch.nn.functional as F

from . import checks, phantoms

REAL_IMAGES = ("ct", "mr", "cell", "ct_tuning", "mr_tuning")
# Natural pictures that install with the dependencies (no download), grayscale in [0, 1]. Licences: data/README.md.
# Training reads the first group; checkpoint selection during training reads the validation picture (never
# trained on); the reported test figures read the test pictures, which nothing trains or selects on.
NATURAL_TRAINING = ("astronaut", "coffee", "chelsea", "brick", "grass", "gravel", "rocket", "hubble_deep_field",
                    "retina", "clock", "text", "immunohistochemistry", "microaneurysms")
NATURAL_VALIDATION = ("grace_hopper",)  # matplotlib's sample data
NATURAL_TEST = ("camera", "coins")
SPLITS = {"train": NATURAL_TRAINING, "validation": NATURAL_VALIDATION, "test": NATURAL_TEST}
# The training mix (fractions of each batch) shared by the denoisers and the DEQ/ODER models, recorded in
# every checkpoint's manifest entry.
MIX = {"random_ellipses": 0.15, "textured_phantoms": 0.15, "shepp_logan_variations": 0.1, "random_cells": 0.1,
       "natural_crops": 0.5}


def real_image(name: str, size: int | None = None) -> torch.Tensor:
    """A real image ``[1, 1, H, W]`` in [0, 1], resized (anti-aliased) to ``size``, from the ``.npy``
    files of ``data/`` (installed as ``oder_edu.data``; ``data/README.md`` gives sources and licences):

    - ``"ct"``: pydicom's CT_small.dcm (128², Hounsfield units) as attenuation,
      (HU + 1000) / 2500 clipped to [0, 1]: air 0, water 0.4, dense bone 1;
    - ``"mr"``: pydicom's MR_small.dcm (64²) magnitude over its maximum;
    - ``"ct_tuning"``, ``"mr_tuning"``: another CT slice (pydicom's J2K_pixelrep_mismatch.dcm, 128²) and MR
      slice (examples_overlay.dcm, 64²), mapped the same ways: what methods' strengths are tuned on, so that
      the figures on ``"ct"`` and ``"mr"`` are never tuned on the test image;
    - ``"cell"``: scikit-image's ``cell``, a quantitative phase image (512² crop), minus its
      background phase (the median of the border pixels), clipped at 0 and scaled to [0, 1]: IDT
      cannot see an image's mean, so a sample must sit on a zero background.
    """
    checks.choice("name", name, REAL_IMAGES)
    if size is not None:
        size = checks.integer("size", size, 8)
        checks.memory(f"real_image({name!r}, size={size})", 12.0 * size * size)
    stored = {"ct": "ct_small.npy", "mr": "mr_small.npy", "cell": "cell_phase.npy", "ct_tuning": "ct_tuning.npy",
              "mr_tuning": "mr_tuning.npy"}[name]
    with importlib.resources.as_file(importlib.resources.files("oder_edu.data") / stored) as path:
        array = np.load(path, allow_pickle=False).astype(np.float64)
    if name.startswith("ct"):
        image = np.clip((array + 1000.0) / 2500.0, 0.0, 1.0)
    elif name.startswith("mr"):
        image = array / array.max()
    else:
        border = np.concatenate([array[:16].ravel(), array[-16:].ravel(), array[:, :16].ravel(), array[:, -16:].ravel()])
        image = np.clip(array - np.median(border), 0.0, None)
        image /= image.max()
    x = torch.from_numpy(image).float()[None, None]
    if size is not None and size != x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    return x.clamp(0, 1)


@functools.lru_cache(maxsize=4)
def _pictures(names: tuple[str, ...]) -> tuple[torch.Tensor, ...]:
    """The pictures as float32 ``[C, H, W]`` tensors in [0, 1], C = 3 for colour (mixed to gray per crop)."""
    import skimage.data

    pictures = []
    for name in names:
        if name == "grace_hopper":
            import matplotlib.cbook
            import matplotlib.image

            image = matplotlib.image.imread(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
        else:
            image = getattr(skimage.data, name)()
        image = np.asarray(image, dtype=np.float64) / 255.0
        image = image[..., :3].transpose(2, 0, 1) if image.ndim == 3 else image[None]
        pictures.append(torch.from_numpy(np.ascontiguousarray(image)).float())
    return tuple(pictures)


LUMA = torch.tensor([0.2125, 0.7154, 0.0721])  # scikit-image's rgb2gray weights


def natural_crops(n: int, image_size: int, generator: torch.Generator, split: str = "train") -> torch.Tensor:
    """``n`` random patches ``[n, 1, H, W]`` of the natural pictures of ``split`` ('train', 'validation' or
    'test'; ``SPLITS``): square crops of random side in [image_size, 3 * image_size] (bounded by the picture)
    resized to ``image_size`` with anti-aliasing (several scales of the same picture); a colour picture mixed
    to gray with luma weights or, half of the time, random convex weights of its channels; rotated by a
    random multiple of 90°, flipped with probability 1/2; a gamma curve x -> x^g with log g uniform in
    [log 0.7, log 1.4]; and mapped x -> a x + b with a in [0.6, 1] and b in [0, 1 - a]."""
    n, image_size = checks.integer("n", n, 1), checks.integer("image_size", image_size, 8)
    pictures = _pictures(SPLITS[checks.choice("split", split, tuple(SPLITS))])
    uniform = lambda low=0.0, high=1.0: low + (high - low) * float(torch.rand(1, generator=generator))  # noqa: E731
    crops = []
    for _ in range(n):
        picture = pictures[int(torch.randint(len(pictures), (1,), generator=generator))]
        _, h, w = picture.shape
        limit = min(h, w, 3 * image_size)
        side = int(torch.randint(min(image_size, limit), limit + 1, (1,), generator=generator))
        top = int(torch.randint(h - side + 1, (1,), generator=generator))
        left = int(torch.randint(w - side + 1, (1,), generator=generator))
        weights = LUMA if uniform() < 0.5 else -torch.rand(3, generator=generator).log()
        crop = picture[:, top:top + side, left:left + side]
        if len(crop) == 3:
            crop = torch.einsum("c,chw->hw", weights / weights.sum(), crop)[None]
        crop = crop[None]
        if side != image_size:
            crop = F.interpolate(crop, size=(image_size, image_size), mode="bilinear", antialias=True)
        crop = torch.rot90(crop, int(torch.randint(4, (1,), generator=generator)), dims=(2, 3))
        if uniform() < 0.5:
            crop = crop.flip(-1)
        crop = crop.clamp(0, 1) ** math.exp(uniform(math.log(0.7), math.log(1.4)))
        a = uniform(0.6, 1.0)
        crops.append(a * crop + (1 - a) * uniform())
    return torch.cat(crops).clamp(0, 1)


MAKERS = {"random_ellipses": phantoms.random_ellipses, "textured_phantoms": phantoms.textured_phantoms,
          "shepp_logan_variations": phantoms.shepp_logan_variations, "random_cells": phantoms.random_cells,
          "natural_crops": natural_crops}


def training_images(n: int, image_size: int, generator: torch.Generator, mix: dict | None = None) -> torch.Tensor:
    """A shuffled batch ``[n, 1, H, W]`` in [0, 1] drawn from the sources of ``mix`` (a dict
    ``source -> fraction``, default ``MIX``; sources are the keys of ``MAKERS``)."""
    n, image_size = checks.integer("n", n, 1), checks.integer("image_size", image_size, 8)
    mix = dict(MIX if mix is None else mix)
    if set(mix) - set(MAKERS) or not mix or min(mix.values()) < 0 or sum(mix.values()) <= 0:
        raise ValueError(f"mix must map sources among {sorted(MAKERS)} to fractions >= 0 (not all 0), got {mix}")
    kind = torch.multinomial(torch.tensor([float(f) for f in mix.values()]), n, replacement=True, generator=generator)
    images = torch.empty(n, 1, image_size, image_size)
    for k, source in enumerate(mix):
        index = (kind == k).nonzero().flatten()
        if len(index):
            images[index] = MAKERS[source](len(index), image_size, generator)
    return images


def recipe(mix: dict | None = None, patch_size: int | None = None) -> dict:
    """What a training run's data were, for its manifest entry."""
    return {"mix": dict(MIX if mix is None else mix), "patch_size": patch_size,
            "natural_pictures": list(NATURAL_TRAINING), "validation_pictures": list(NATURAL_VALIDATION),
            "test_pictures": list(NATURAL_TEST), "augmentation": "crops of side 1-3x the patch, random channel "
            "mixtures, rotations by 90°, flips, gamma in [0.7, 1.4], x -> a x + b with a in [0.6, 1]",
            "source": "pictures bundled with scikit-image and matplotlib (CC0 / public domain, data/README.md) and "
                      "procedural phantoms; no medical slice is used for training"}
