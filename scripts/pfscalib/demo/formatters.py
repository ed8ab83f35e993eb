"""Butler formatter that stores 2-D numpy images as FITS files (astropy), like PFS's FITS products."""

from __future__ import annotations

from typing import Any

import numpy as np
from astropy.io import fits
from lsst.daf.butler import FormatterV2
from lsst.resources import ResourcePath


class FitsImageFormatter(FormatterV2):
    """Read/write a numpy array as the primary HDU of a FITS file."""

    default_extension = ".fits"
    supported_extensions = frozenset({".fits"})
    can_read_from_local_file = True

    def read_from_local_file(self, path: str, component: str | None = None, expected_size: int = -1) -> Any:
        with fits.open(path, memmap=False) as hdus:
            return np.array(hdus[0].data)

    def write_local_file(self, in_memory_dataset: Any, uri: ResourcePath) -> None:
        fits.PrimaryHDU(np.asarray(in_memory_dataset)).writeto(uri.ospath, overwrite=True)
