"""The Python API: every CLI verb is a thin layer over these calls.

    from imgcls import Classifier
    clf = Classifier.train("photos/", epochs=5)          # -> runs/efficientnet_lite0-feature-extraction
    Classifier.load("runs/efficientnet_lite0-feature-extraction").predict("new_photos/")
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from imgcls.config import load_train_config
from imgcls.rundir import RunDir


class Classifier:
    """A trained image classifier: a run directory, checkpoint or exported model."""

    def __init__(self, predictor: Any, run: RunDir | None = None):
        self.predictor = predictor
        self.run = run
        self._embedder: Any = None

    def __repr__(self) -> str:
        return f"Classifier({str(self.path)!r}, classes={self.classes})"

    @property
    def classes(self) -> list[str]:
        return list(self.predictor.classes)

    @property
    def path(self) -> Path:
        return self.run.path if self.run else self.predictor.source

    # training ------------------------------------------------------------------------------------
    @classmethod
    def train(cls, data: str | Path | None = None, *, config: str | Path | None = None, **options: Any) -> Classifier:
        """Train on DATA with options named as the flags of ``imgcls train`` (snake_case); returns the
        best model of the new run. ``config`` is a YAML file of the same settings (options win)."""
        from imgcls.data.cifar import is_cifar10_spec  # light modules: no torch yet
        from imgcls.data.folders import data_folder, start_checking

        settings = load_train_config(config, data=str(data) if data is not None else None, **options)
        if settings.data and not is_cifar10_spec(settings.data):
            # a mistyped path fails in a second, before torch and Lightning load; while they load, the
            # images are checked on the other core
            start_checking(data_folder(settings.data))
        from imgcls.training.fit import train  # after validation: a typo fails before torch loads

        return cls.load(train(settings).path)

    @classmethod
    def resume(cls, run: str | Path) -> Classifier:
        """Continue an interrupted run from its last.pt."""
        from imgcls.training.fit import resume

        return cls.load(resume(run).path)

    # using a model -------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", reject_rate: float | None = 0.05) -> Classifier:
        """A run directory, ``.pt`` checkpoint, exported ``.onnx``, TorchScript ``.ts`` or OpenVINO ``.xml`` file.

        ``reject_rate`` is the share of known images (the run's val photos) the model calls unknown, which
        sets its threshold; None never answers unknown (``--no-reject``)."""
        from imgcls.inference.predictor import Predictor

        return cls(Predictor.load(path, device=device, reject_rate=reject_rate), RunDir.of(path))

    def predict(self, inputs: str | Path | Iterable[str | Path], topk: int = 5, batch_size: int = 32,
                progress: Callable[[int, int], None] | None = None, **files: Any) -> list[dict[str, Any]]:
        """``[{"path", "label", "score", "topk": [{"label", "score"}], "unknown", "ood_score"}]`` for image files and
        folders; ``unknown`` is true for a picture of none of the classes (``ood_score`` above the threshold), and
        false with ``ood_score`` None for models without OOD data. A multi-label model answers
        ``"labels": [{"label", "score"}]`` (every class over its threshold) in place of label/score.
        ``files``: as for :meth:`iter_predict`."""
        return list(self.iter_predict(inputs, topk, batch_size, progress, **files))

    def iter_predict(self, inputs: str | Path | Iterable[str | Path], topk: int = 5, batch_size: int = 32,
                     progress: Callable[[int, int], None] | None = None, *, csv: str | Path | None = None,
                     sort_into: str | Path | None = None, move: bool = False) -> Iterator[dict[str, Any]]:
        """:meth:`predict`'s answers one by one as they come, in bounded memory however many images there are.
        ``csv``: also write them to this CSV file (path, label, score, topk, unknown); ``sort_into``: hard-link
        (or copy; ``move=True``: move) each image into ``sort_into/<label>/``, never overwriting, with a
        manifest.csv of what went where."""
        from imgcls.inference.outputs import PredictionFiles

        with PredictionFiles(csv, sort_into, move) as written:
            inputs = [inputs] if isinstance(inputs, (str, Path)) else inputs
            for prediction in self.predictor.iter_predict(written.inputs(inputs), topk=topk, batch_size=batch_size,
                                                          progress=progress):
                result = prediction.to_dict()
                written.add(result)
                yield result

    # embeddings ----------------------------------------------------------------------------------
    def _embedding_model(self) -> Any:
        from imgcls.training.embeddings import EmbeddingModel

        if self._embedder is None:
            self._embedder = EmbeddingModel.load(self.predictor.source)
        return self._embedder

    def embed(self, inputs: str | Path | Iterable[str | Path], out: str | Path | None = None,
              batch_size: int = 64) -> Any:
        """Embeddings (the backbone's pooled pre-logit features) of image files and folders, from the
        per-file feature cache: an ``Embeddings`` with ``paths`` and ``vectors`` (N, D). ``out``: also write
        them to a .parquet file (columns path, embedding) or a .npy file with an index .csv beside it."""
        embeddings = self._embedding_model().embed([inputs] if isinstance(inputs, (str, Path)) else inputs,
                                                   batch_size=batch_size)
        if out is not None:
            from imgcls.training.embeddings import write_embeddings

            write_embeddings(embeddings, out)
        return embeddings

    def similar(self, image: str | Path, folder: str | Path | Iterable[str | Path], top: int = 10,
                ) -> list[dict[str, Any]]:
        """``[{"path", "score"}]``: the images of ``folder`` most like ``image`` by cosine similarity of
        their embeddings, best first; the query's own file first when it is in ``folder``."""
        from imgcls.training.embeddings import similar_images

        return similar_images(self._embedding_model(), image, folder, top)

    def __call__(self, images: Any, topk: int = 5, batch_size: int = 32) -> dict[str, Any] | list[dict[str, Any]]:
        """Classify like a ``transformers`` pipeline call: one image file or PIL image gives one dict, a
        folder or a list (of paths, or of PIL images) a list of dicts, each as :meth:`predict` returns it
        (PIL images without a file name have ``"path": None``)."""
        from PIL import Image

        if isinstance(images, Image.Image):
            return self._predict_pictures([images], topk, batch_size)[0]
        if isinstance(images, (str, Path)):
            results = self.predict(images, topk=topk, batch_size=batch_size)
            return results if Path(images).expanduser().is_dir() else results[0]
        items = list(images)
        pictures = [isinstance(item, Image.Image) for item in items]
        if items and all(pictures):
            return self._predict_pictures(items, topk, batch_size)
        if any(pictures):
            from imgcls.errors import DataError

            raise DataError("give a list of image paths or a list of PIL images, not both in one list")
        return self.predict(items, topk=topk, batch_size=batch_size)

    def _predict_pictures(self, images: list[Any], topk: int, batch_size: int) -> list[dict[str, Any]]:
        from imgcls.data.images import to_rgb

        results = []
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            names = [getattr(image, "filename", None) or None for image in chunk]
            results += [p.to_dict() for p in self.predictor.label_images([to_rgb(image) for image in chunk], names,
                                                                         topk)]
        return results

    def evaluate(self, data: str | Path | None = None, split: str = "val", *, tta: bool = False,
                 out: str | Path | None = None, ood: str | Path | None = None,
                 progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Metrics on a split of ``data`` (default: the run's own data and split), in the shape of
        ``imgcls evaluate --json``. ``tta`` averages each image with its mirror image; ``out`` is a folder
        to write the pictures, evaluation.json and report.html into; ``ood`` a folder of pictures of none of
        the classes, which adds ``"ood": {"auroc", "rejected", "accepted_known", ...}``."""
        from imgcls.data.source import data_for
        from imgcls.evaluation.evaluate import evaluate_predictor

        source = data_for(self.path, str(data) if data is not None else None)
        evaluation = evaluate_predictor(self.predictor, source, split, tta=tta, progress=progress)
        ood_result = None
        if ood is not None:
            from imgcls.evaluation.ood import evaluate_ood

            ood_result = evaluate_ood(self.predictor, getattr(evaluation, "ood_scores", None), ood)
        if out is not None:
            from imgcls.evaluation.report import write_report

            write_report(out, evaluation, self.predictor.source, source, self.run, ood=ood_result)
        if ood_result is None:
            return evaluation.metrics
        return {**evaluation.metrics, "ood": ood_result.to_dict()}

    def explain(self, inputs: str | Path | Iterable[str | Path], out: str | Path, *,
                target: str | None = None) -> list[dict[str, Any]]:
        """A Grad-CAM overlay per image (files and folders) written into ``out`` as NAME.gradcam.png, for the
        predicted class or ``target``; returns ``[{"path", "label", "score", "overlay"}]``. PyTorch
        checkpoints only (a run directory or .pt)."""
        return explain(self.path, inputs, out, target=target)

    # deploying -----------------------------------------------------------------------------------
    def export(self, format: str = "onnx", quantize: str | None = None, out: str | Path | None = None,  # noqa: A002
               data: str | Path | None = None, tolerance: float | None = None, max_accuracy_drop: float = 0.05,
               ) -> dict[str, Any]:
        """Export to ONNX (``quantize="int8"`` optional), TorchScript, OpenVINO (``.xml`` + ``.bin``) or a
        Hugging Face folder (``format="hf"``), checked against PyTorch on the run's val images (hf: through
        transformers); returns the summary (``path``, ``parity``, ``int8``...). ``out`` defaults to beside
        the checkpoint (``runs/NAME/best.onnx``, ``runs/NAME/best-hf``)."""
        from imgcls.export.exporter import export_model

        return export_model(self.predictor.source, format, quantize=quantize, out=out,
                            data=str(data) if data is not None else None, tolerance=tolerance,
                            max_accuracy_drop=max_accuracy_drop).to_dict()

    def serve(self, host: str = "127.0.0.1", port: int = 8000, **options: Any) -> None:
        """Run the HTTP API and upload page until interrupted (options: see ``imgcls serve --help``)."""
        from imgcls.serve.server import run_server

        run_server(self.predictor, host=host, port=port, **options)


def find_lr(data: str | Path | None = None, *, out: str | Path = ".", steps: int = 50,
            config: str | Path | None = None, **options: Any) -> dict[str, Any]:
    """Lightning's learning-rate range test on DATA with the options of ``imgcls train``; writes lr_find.png and
    lr_find.json into ``out``; returns ``{"suggestion", "strategy", "plot", "lrs", "losses"}``."""
    settings = load_train_config(config, data=str(data) if data is not None else None, **options)
    from imgcls.training.lr_find import lr_find

    return lr_find(settings, out, steps=steps).to_dict()


def explain(model: str | Path, inputs: str | Path | Iterable[str | Path], out: str | Path, *,
            target: str | None = None) -> list[dict[str, Any]]:
    """:meth:`Classifier.explain` of a run directory or .pt checkpoint, without loading a Predictor first."""
    from imgcls.inference.explain import explainer_for, overlay_paths
    from imgcls.inference.predictor import expand_image_paths
    from imgcls.errors import DataError
    from imgcls.rundir import atomic_write_bytes, writable_folder

    writable_folder(Path(out), "the overlays")  # before the model loads and the images are explained
    explainer = explainer_for(model)
    paths = expand_image_paths([inputs] if isinstance(inputs, (str, Path)) else inputs)
    explanations = explainer.explain_files(paths, target)
    if paths and not explanations:
        raise DataError(f"none of the {len(paths)} input files could be read as an image")
    results = []
    for explanation, file in zip(explanations, overlay_paths([e.path for e in explanations], Path(out))):
        atomic_write_bytes(file, explanation.png())
        results.append({"path": explanation.path, "label": explanation.label, "score": round(explanation.score, 6),
                        "overlay": str(file)})
    return results


def doctor(data: str | Path, *, labels: bool = False, model: str | Path | None = None,
           progress: Callable[[int, int], None] | None = None, workers: int | None = None) -> Any:
    """The checks of ``imgcls doctor`` (a :class:`~imgcls.data.doctor.DoctorReport`; ``.to_dict()`` is
    ``imgcls doctor --json``). ``labels`` adds the
    training files whose label is probably wrong (kind "suspect-label", worst first), judged on the
    embeddings of ``model``'s backbone (a run or checkpoint; default: the pretrained efficientnet_lite0)."""
    from imgcls.data.doctor import Problem, diagnose

    report = diagnose(data, progress=progress, workers=workers)
    if labels or model is not None:
        from imgcls.training.label_issues import find_suspect_labels

        report.problems += [Problem(*s.to_problem()) for s in find_suspect_labels(data, model)]
    return report


def split(src: str | Path, out: str | Path, val: float = 0.2, test: float = 0.0, seed: int = 42) -> dict:
    """Write a stratified train/val(/test) copy of one class-folder tree (hard links where possible)."""
    from imgcls.data.split import split_folder

    return split_folder(src, out, val=val, test=test, seed=seed)


def compare(runs: Iterable[str | Path], out: str | Path) -> list[dict[str, Any]]:
    """Write table.md, table.csv, val_accuracy.png and report.html comparing runs into ``out``; returns the rows."""
    from imgcls.evaluation.compare import compare_runs

    return [row.to_dict() for row in compare_runs(list(runs), out)]


def bench(data: str | Path, *, batches: int = 4, steps: int = 2, config: str | Path | None = None,
          **options: Any) -> dict[str, Any]:
    """Input pipeline vs model throughput of training on DATA with the options of ``imgcls train``:
    ``{"data", "model", "bound", "ratio", "advice"}``."""
    from imgcls.training.bench import bench as measure

    return measure(str(data), batches=batches, steps=steps, config_file=config, **options)


def list_models(pattern: str | None = None, *, offline: bool = False) -> list[Any]:
    """The models ``--model`` takes (``.to_dict()`` of each is ``imgcls models --json``)."""
    from imgcls.models.catalog import list_models as catalog

    return catalog(pattern, offline_only=offline)
