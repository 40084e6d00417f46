"""imgcls: a folder of photos sorted into class folders -> a trained, evaluated, exported, served classifier."""

from imgcls import runtime as _runtime

_runtime.set_passive_openmp()  # before torch is first imported
_runtime.keep_freed_memory()

from imgcls.api import Classifier  # noqa: E402
from imgcls.errors import ImgclsError

__version__ = "0.1.0"
__all__ = ["Classifier", "ImgclsError", "__version__"]
