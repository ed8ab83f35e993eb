"""Butler formatter that stores 2-D numpy images as FITS files (astropy), like PFS's FITS products."""

from __future__ import annotations

from typing import Any

import numpy as np
from astropy.io import fits
from lsst.daf.butler import FormatterV2
from lsst.resources import ResourcePath

from . import twin

# The header cards the demo keeps (afw writes a whole PropertyList): the ISR's calibration provenance.
METADATA_PREFIX = "LSST "


class FitsImageFormatter(FormatterV2):
    """Read/write a numpy array as the primary HDU of a FITS file; an image that keeps a mask (the fiberFlat's
    BAD_FLAT) also gets a MASK extension whose MP_<plane> cards give each plane's bit, as afw writes them."""

    default_extension = ".fits"
    supported_extensions = frozenset({".fits"})
    can_read_from_local_file = True

    def read_from_local_file(self, path: str, component: str | None = None, expected_size: int = -1) -> Any:
        with fits.open(path, memmap=False) as hdus:
            primary = hdus[0].header
            metadata = {key: primary[key] for key in primary if key.startswith(METADATA_PREFIX)}
            if "MASK" not in hdus and not metadata:
                return np.array(hdus[0].data)
            from .products import StandinExposure

            if "MASK" not in hdus:
                return StandinExposure.from_array(np.array(hdus[0].data), metadata=metadata)
            header = hdus["MASK"].header
            planes = {key[3:]: int(header[key]) for key in header if key.startswith("MP_")}
            mask = np.array(hdus["MASK"].data)
            return StandinExposure.from_array(np.array(hdus[0].data), mask, planes, metadata=metadata)

    def write_local_file(self, in_memory_dataset: Any, uri: ResourcePath) -> None:
        metadata = getattr(in_memory_dataset, "_metadata", None) or {}
        header = fits.Header([(f"HIERARCH {k}", v) for k, v in metadata.items() if k.startswith(METADATA_PREFIX)])
        hdus = [fits.PrimaryHDU(np.asarray(in_memory_dataset), header=header)]
        mask = getattr(in_memory_dataset, "_mask", None)
        if mask is not None:
            header = fits.Header([(f"HIERARCH MP_{name}", bit) for name, bit in mask.getMaskPlaneDict().items()])
            hdus.append(fits.ImageHDU(mask.array, header=header, name="MASK"))
        fits.HDUList(hdus).writeto(uri.ospath, overwrite=True)
        # the timing twin: real size x scale (off by default; no formatter instance: a plain file write)
        twin.pad(uri.ospath, getattr(self, "dataset_ref", None))
