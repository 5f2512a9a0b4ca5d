"""Make the real images of data/ from packages installed through the registry (offline).

    python data/make_data.py            # rewrites nothing that exists; --force to remake

Each output is a small .npy array (no pickles); data/README.md gives its source and licence. Needs
pydicom and scikit-image (oder-edu's `test` extra). Medical slices are validation data only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def ct_slice() -> np.ndarray:
    """pydicom's CT_small.dcm (128 x 128) in Hounsfield units, int16."""
    import pydicom
    import pydicom.data

    dataset = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    hu = dataset.pixel_array.astype(np.float64) * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept)
    return np.round(hu).astype(np.int16)


def mr_slice() -> np.ndarray:
    """pydicom's MR_small.dcm (64 x 64) magnitude, as stored (uint16)."""
    import pydicom
    import pydicom.data

    return pydicom.dcmread(pydicom.data.get_testdata_file("MR_small.dcm")).pixel_array.astype(np.uint16)


def _resized(image: np.ndarray, size: int) -> np.ndarray:
    from skimage.transform import resize

    return resize(image.astype(np.float64), (size, size), anti_aliasing=True, preserve_range=True)


def ct_tuning_slice() -> np.ndarray:
    """pydicom's J2K_pixelrep_mismatch.dcm (a 512 x 512 head CT, from pydicom issue 1149) in Hounsfield
    units, resized (anti-aliased) to 128 x 128, int16: the slice methods are tuned on, never tested on."""
    import pydicom
    import pydicom.data

    dataset = pydicom.dcmread(pydicom.data.get_testdata_file("J2K_pixelrep_mismatch.dcm"))
    hu = dataset.pixel_array.astype(np.float64) * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept)
    return np.round(_resized(hu, 128)).astype(np.int16)


def mr_tuning_slice() -> np.ndarray:
    """pydicom's examples_overlay.dcm (a 300 x 484 abdominal MR slice), its central 300 x 300 square resized
    (anti-aliased) to 64 x 64, uint16: the slice methods are tuned on, never tested on."""
    import pydicom
    import pydicom.data

    image = pydicom.dcmread(pydicom.data.get_testdata_file("examples_overlay.dcm")).pixel_array
    left = (image.shape[1] - image.shape[0]) // 2
    return np.round(_resized(image[:, left:left + image.shape[0]], 64)).astype(np.uint16)


def cell_phase() -> np.ndarray:
    """scikit-image's ``cell`` (a quantitative phase image, 660 x 550, 0.107 µm pixels): the
    central 512 x 512 crop around the cell, as stored (uint8). Its background is removed when
    it is loaded (``oder_edu.images.real_image``)."""
    from skimage.data import cell

    image = cell()
    top, left = (image.shape[0] - 512) // 2, (image.shape[1] - 512) // 2
    return np.ascontiguousarray(image[top:top + 512, left:left + 512])


MAKERS = {"ct_small.npy": ct_slice, "mr_small.npy": mr_slice, "cell_phase.npy": cell_phase,
          "ct_tuning.npy": ct_tuning_slice, "mr_tuning.npy": mr_tuning_slice}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="remake files that exist")
    args = parser.parse_args()
    for name, make in MAKERS.items():
        path = HERE / name
        if path.exists() and not args.force:
            print(f"{path.name} exists (use --force to remake it)")
            continue
        array = make()
        partial = path.with_suffix(".partial.npy")
        np.save(partial, array, allow_pickle=False)
        partial.replace(path)
        print(f"wrote {path.name}: {array.shape} {array.dtype}, {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
