"""imgcls: a folder of photos sorted into class folders -> a trained, evaluated, exported, served classifier."""

from imgcls.api import Classifier
from imgcls.errors import ImgclsError
from imgcls.version import __version__
__all__ = ["Classifier", "ImgclsError", "__version__"]
