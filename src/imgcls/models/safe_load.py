"""Loading a PyTorch file without ever running code from it.

``torch.load(weights_only=True)`` admits tensors and plain containers only; this turns its refusals
and failures into one-line :class:`~imgcls.errors.ImgclsError` messages that say which it was:
a file that would call code when unpickled (booby-trapped, or a whole pickled model), a plain pickle,
or a damaged file.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any

from imgcls.errors import ImgclsError, first_line


def safe_torch_load(path: str | Path, error: type[ImgclsError], fix: str) -> Any:
    """The file's content, loaded with ``weights_only=True``; ``error(message)`` when it cannot be.

    ``fix`` ends each message: what the user can do instead.
    """
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": the error says enough
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        called = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if called:
            raise error(f"refusing to load {path}: unpickling it would call {called.group(1)}, i.e. run code "
                        f"(a booby-trapped file, or a whole pickled model); imgcls loads only tensors and plain "
                        f"data and ran nothing: {fix}") from None
        raise error(f"{path} is not a PyTorch tensor file (a plain pickle or a damaged file; refused "
                    f"without unpickling it): {fix}") from None
    except Exception as exc:  # noqa: BLE001 - zip, storage and pickle readers fail in many ways on a bad file
        raise error(f"{path} is corrupt or not a PyTorch file ({first_line(exc, 160)}): {fix}") from None
