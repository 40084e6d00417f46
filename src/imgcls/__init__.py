"""imgcls: a folder of photos sorted into class folders -> a trained, evaluated, exported, served classifier."""

from imgcls.api import Classifier
from imgcls.errors import ImgclsError

__version__ = "0.1.0"
__all__ = ["Classifier", "ImgclsError", "__version__"]
