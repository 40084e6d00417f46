"""Pictures: Korean class and run names draw with a Hangul font, never as missing-glyph boxes."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from matplotlib import font_manager, rcParams
from PIL import Image

from imgcls.evaluation.calibration import calibration
from imgcls.evaluation.fonts import font_face_css
from imgcls.evaluation.plots import plot_confusion, plot_curves, plot_reliability, plot_val_accuracy

KOREAN = ["개미", "벌", "나비 (큰)"]
EPOCHS = [{"epoch": e, "train_loss": 1 / e, "train_acc": 0.5 + e / 10, "val_loss": 1.2 / e,
           "val_acc": 0.4 + e / 10, "lr": 1e-3, "seconds": 2.0} for e in (1, 2, 3)]


def test_korean_names_render_in_every_picture_without_glyph_warnings(tmp_path: Path) -> None:
    probs = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.3, 0.3, 0.4], [0.6, 0.3, 0.1]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns "Glyph ... missing from font(s)" for boxes
        pictures = [
            plot_confusion([[3, 1, 0], [0, 2, 2], [1, 0, 5]], KOREAN, tmp_path / "cm.png", "개미와 벌"),
            plot_curves(EPOCHS, tmp_path / "curves.png", "한국어 실험"),
            plot_reliability(calibration(np.array([0, 1, 2, 1]), probs), tmp_path / "rel.png", "보정"),
            plot_val_accuracy([("미세조정", EPOCHS), ("특징 추출", EPOCHS[:2])], tmp_path / "cmp.png", "비교"),
        ]
    for path in pictures:
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) > 200
    family = font_manager.FontProperties(family=rcParams["font.family"])
    assert Path(font_manager.findfont(family, fallback_to_default=False)).name == "NanumGothic.ttf"


def test_confusion_matrix_of_many_classes_stays_a_sensible_size(tmp_path: Path) -> None:
    n = 70
    path = plot_confusion(np.eye(n, dtype=int).tolist(), [f"class{i}" for i in range(n)], tmp_path / "cm.png")
    with Image.open(path) as image:
        assert image.size[0] <= 3300 and image.size[1] <= 1700


def test_html_font_is_cut_down_to_the_characters_used() -> None:
    css = font_face_css("Per class 클래스별 성능 개미")
    assert "@font-face" in css and "data:font/woff;base64," in css
    assert "U+AC1C" in css  # 개
    assert len(css) < 40_000  # a few kB, not the 4.7 MB font
    assert font_face_css("only ascii text") == ""


def test_the_cut_font_is_kept_for_the_next_report_and_an_unwritable_cache_costs_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGCLS_CACHE", str(tmp_path / "cache"))
    css = font_face_css("개미 벌")
    (entry,) = (tmp_path / "cache" / "fonts").iterdir()
    entry.write_text(css.replace("U+", "U+0"), encoding="ascii")  # the next report reads what is kept
    assert font_face_css("벌 개미") == css.replace("U+", "U+0")
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would be")
    monkeypatch.setenv("IMGCLS_CACHE", str(blocked))
    again = font_face_css("개미 벌")  # cut again (the font's own timestamp differs), no error
    assert again.startswith("@font-face") and again.split("unicode-range:")[1] == css.split("unicode-range:")[1]
