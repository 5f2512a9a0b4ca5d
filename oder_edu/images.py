"""Real images: the validation slices of ``data/``, natural-image patches for training, and the
training mix of both with the procedural phantoms. Medical slices are for validation only:
nothing here trains on them. All images are ``[n, 1, H, W]`` float32 in [0, 1] on the CPU; random
functions take an explicit ``torch.Generator``.
"""

from __future__ import annotations

import functools
import importlib.resources

import numpy as np
import torch
import torch.nn.functional as F

from . import checks, phantoms

REAL_IMAGES = ("ct", "mr", "cell")
# scikit-image's bundled pictures (no download), CC0 or public domain per their docstrings.
NATURAL_TRAINING = ("astronaut", "coffee", "chelsea", "brick", "grass", "gravel", "rocket",
                    "hubble_deep_field", "retina", "clock", "text")
NATURAL_HELD_OUT = ("camera", "coins")
# The default training mix (fractions of each batch), recorded in every checkpoint's manifest entry.
MIX = {"random_ellipses": 0.3, "shepp_logan_variations": 0.1, "random_cells": 0.1, "natural_crops": 0.5}


def real_image(name: str, size: int | None = None) -> torch.Tensor:
    """A real image ``[1, 1, H, W]`` in [0, 1], resized (anti-aliased) to ``size``, from the ``.npy``
    files of ``data/`` (installed as ``oder_edu.data``; ``data/README.md`` gives sources and licences):

    - ``"ct"``: pydicom's CT_small.dcm (128², Hounsfield units) as attenuation,
      (HU + 1000) / 2500 clipped to [0, 1]: air 0, water 0.4, dense bone 1;
    - ``"mr"``: pydicom's MR_small.dcm (64²) magnitude over its maximum;
    - ``"cell"``: scikit-image's ``cell``, a quantitative phase image (512² crop), minus its
      background phase (the median of the border pixels), clipped at 0 and scaled to [0, 1]: IDT
      cannot see an image's mean, so a sample must sit on a zero background.
    """
    checks.choice("name", name, REAL_IMAGES)
    if size is not None:
        size = checks.integer("size", size, 8)
        checks.memory(f"real_image({name!r}, size={size})", 12.0 * size * size)
    stored = {"ct": "ct_small.npy", "mr": "mr_small.npy", "cell": "cell_phase.npy"}[name]
    with importlib.resources.as_file(importlib.resources.files("oder_edu.data") / stored) as path:
        array = np.load(path, allow_pickle=False).astype(np.float64)
    if name == "ct":
        image = np.clip((array + 1000.0) / 2500.0, 0.0, 1.0)
    elif name == "mr":
        image = array / array.max()
    else:
        border = np.concatenate([array[:16].ravel(), array[-16:].ravel(), array[:, :16].ravel(), array[:, -16:].ravel()])
        image = np.clip(array - np.median(border), 0.0, None)
        image /= image.max()
    x = torch.from_numpy(image).float()[None, None]
    if size is not None and size != x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    return x.clamp(0, 1)


@functools.lru_cache(maxsize=2)
def _pictures(names: tuple[str, ...]) -> tuple[torch.Tensor, ...]:
    """The bundled scikit-image pictures as grayscale float32 ``[H, W]`` tensors in [0, 1]."""
    import skimage.data
    from skimage.color import rgb2gray

    pictures = []
    for name in names:
        image = getattr(skimage.data, name)()
        image = rgb2gray(image[..., :3]) if image.ndim == 3 else image.astype(np.float64) / 255.0
        pictures.append(torch.from_numpy(np.ascontiguousarray(image)).float())
    return tuple(pictures)


def natural_crops(n: int, image_size: int, generator: torch.Generator, held_out: bool = False) -> torch.Tensor:
    """``n`` random patches ``[n, 1, H, W]`` of scikit-image's bundled pictures (``NATURAL_TRAINING``,
    or ``NATURAL_HELD_OUT`` with ``held_out``): square crops of random side in [image_size,
    2 * image_size] (bounded by the picture) resized to ``image_size`` with anti-aliasing, rotated
    by a random multiple of 90°, flipped with probability 1/2, and mapped x -> a x + b with a in
    [0.6, 1] and b in [0, 1 - a]."""
    n, image_size = checks.integer("n", n, 1), checks.integer("image_size", image_size, 8)
    pictures = _pictures(NATURAL_HELD_OUT if held_out else NATURAL_TRAINING)
    crops = []
    for _ in range(n):
        picture = pictures[int(torch.randint(len(pictures), (1,), generator=generator))]
        h, w = picture.shape
        limit = min(h, w, 2 * image_size)
        side = int(torch.randint(min(image_size, limit), limit + 1, (1,), generator=generator))
        top = int(torch.randint(h - side + 1, (1,), generator=generator))
        left = int(torch.randint(w - side + 1, (1,), generator=generator))
        crop = picture[top:top + side, left:left + side][None, None]
        if side != image_size:
            crop = F.interpolate(crop, size=(image_size, image_size), mode="bilinear", antialias=True)
        crop = torch.rot90(crop, int(torch.randint(4, (1,), generator=generator)), dims=(2, 3))
        if torch.rand(1, generator=generator) < 0.5:
            crop = crop.flip(-1)
        a = 0.6 + 0.4 * torch.rand(1, generator=generator)
        crops.append(a * crop + (1 - a) * torch.rand(1, generator=generator))
    return torch.cat(crops).clamp(0, 1)


MAKERS = {"random_ellipses": phantoms.random_ellipses, "shepp_logan_variations": phantoms.shepp_logan_variations,
          "random_cells": phantoms.random_cells, "natural_crops": natural_crops}


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
            "natural_pictures": list(NATURAL_TRAINING), "held_out_pictures": list(NATURAL_HELD_OUT),
            "source": "scikit-image bundled pictures (CC0 / public domain) and procedural phantoms; "
                      "no medical slice is used for training"}
