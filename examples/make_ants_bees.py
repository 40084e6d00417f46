"""Rebuild examples/ants_bees from the full hymenoptera_data photos.

The bundled copy keeps the train/val split and every file name of the original, with the
photos downscaled (longest side 256 px, JPEG quality 82, EXIF orientation baked in) so the
demo and tests run offline from a few MB. Non-JPEG files (one palette GIF) are copied as they
are: they are real odd-but-valid inputs the pipeline must handle.

    python examples/make_ants_bees.py ../shared/datasets/hymenoptera_data examples/ants_bees
"""

import shutil
import sys
from pathlib import Path

from PIL import Image, ImageOps

MAX_SIDE = 256
QUALITY = 82


def main(src: Path, dst: Path) -> None:
    for path in sorted(src.rglob("*")):
        if not path.is_file():
            continue
        out = dst / path.relative_to(src)
        out.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(path) as im:
            if im.format != "JPEG":
                shutil.copyfile(path, out)
                continue
            im = ImageOps.exif_transpose(im).convert("RGB")
            im.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
            im.save(out, "JPEG", quality=QUALITY, optimize=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
