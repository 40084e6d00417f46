"""imgcls: a folder of photos sorted into class folders -> a trained, evaluated, exported, served classifier."""

import os as _os

# OpenMP threads that spin while they wait take the cores that loader workers and other programs need:
# on 2 shared cores a training step ran 20-50x slower. Passive threads sleep instead. This must be set
# before torch is first imported; a value the user set is kept.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from imgcls.api import Classifier  # noqa: E402
from imgcls.errors import ImgclsError

__version__ = "0.1.0"
__all__ = ["Classifier", "ImgclsError", "__version__"]
