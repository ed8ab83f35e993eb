"""The timing twin of the demo (issue #33): with config `demo: {twin: {scale: S}}` (the workflow exports it to
every job as PFSCALIB_TWIN_SCALE), each stand-in quantum sleeps its real-site duration x S and each image
it writes is padded to its real-site size x S, from the one table of real figures (pfscalib.plan.realsite).
The numerics stay the demo's: the padding is an extra FITS extension (TWINPAD) that the demo's formatter
never reads. Off (no sleep, no padding) unless the variable is set to a positive number.
"""

from __future__ import annotations

import functools
import os
import time

import numpy as np
from astropy.io import fits

from pfscalib.plan.realsite import TWIN_ENV, duration, padded_mb

PAD_EXTNAME = "TWINPAD"
FITS_BLOCK = 2880  # a FITS header or data unit is written in blocks of this many bytes


def scale() -> float:
    """The twin's scale factor from the environment: 0 (off) unless set to a positive number."""
    try:
        return max(0.0, float(os.environ.get(TWIN_ENV, "") or 0))
    except ValueError:
        return 0.0


def timed(cls):
    """Class decorator for a stand-in task: under the twin, each quantum first sleeps the real duration of
    the task's label x scale (pipetask names a task by its pipeline label)."""
    run_quantum = cls.runQuantum

    @functools.wraps(run_quantum)
    def runQuantum(self, butlerQC, inputRefs, outputRefs):
        if (factor := scale()) > 0:
            time.sleep(duration(self.getName()).seconds * factor)
        return run_quantum(self, butlerQC, inputRefs, outputRefs)

    cls.runQuantum = runQuantum
    return cls


def pad(path: str, ref) -> None:
    """Under the twin, append a TWINPAD extension to the FITS file just written for `ref` so that the file
    reaches its dataset type's real size x scale (to within one FITS block); nothing otherwise."""
    if (factor := scale()) <= 0 or ref is None:
        return
    arm = dict(ref.dataId.mapping).get("arm")
    real_mb = padded_mb(ref.datasetType.name, str(arm))
    if real_mb is None:
        return
    missing = int(real_mb * factor * 1_000_000) - os.path.getsize(path) - FITS_BLOCK  # the extension's header
    if missing > 0:
        header = fits.Header([("EXTNAME", PAD_EXTNAME)])
        fits.append(path, np.zeros(missing, dtype=np.uint8), header=header)
