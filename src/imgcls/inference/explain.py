"""Where the model looked: Grad-CAM overlays (``imgcls explain``, report.html, the upload page).

pytorch-grad-cam does the work; what imgcls adds is picking the layer for any model it builds:
for ViTs the last block's first norm (its patch tokens still feed attention; the block's output
reaches the head only through the class token) with the tokens reshaped to their grid; for CNNs
(timm's and the scratch nets) the last module whose output is still a spatial map.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from imgcls.data.images import ImageLoadError, load_image
from imgcls.data.presets import EvalPreset, Preprocess
from imgcls.errors import CheckpointError, DataError, ModelError

log = logging.getLogger(__name__)

OVERLAY_SUFFIX = ".gradcam.png"


@dataclass
class TargetLayer:
    module: nn.Module
    name: str
    reshape: Callable[[torch.Tensor], torch.Tensor] | None = None


def _vit_reshape(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    prefix = int(getattr(model, "num_prefix_tokens", 1))
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)

    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        patches = tokens[:, prefix:, :]
        height = int(grid[0]) if grid else int(round(patches.shape[1] ** 0.5))
        width = patches.shape[1] // height
        return patches.reshape(tokens.shape[0], height, width, tokens.shape[2]).permute(0, 3, 1, 2)

    return reshape


def find_target_layer(model: nn.Module, img_size: int) -> TargetLayer:
    """The layer whose activations and gradients Grad-CAM weighs (see the module docstring)."""
    blocks = getattr(model, "blocks", None)
    if hasattr(model, "patch_embed") and isinstance(blocks, nn.Sequential) and hasattr(blocks[-1], "norm1"):
        return TargetLayer(blocks[-1].norm1, f"blocks.{len(blocks) - 1}.norm1", _vit_reshape(model))
    names = {module: name for name, module in model.named_modules()}
    spatial: list[nn.Module] = []  # modules in the order their forward passes finish

    def record(module: nn.Module, _: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor) and output.dim() == 4 and min(output.shape[-2:]) > 1:
            spatial.append(module)

    hooks = [m.register_forward_hook(record) for m in model.modules() if m is not model]
    try:
        was_training = model.training
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, img_size, img_size))
        model.train(was_training)
    finally:
        for hook in hooks:
            hook.remove()
    if not spatial:
        raise ModelError(f"{type(model).__name__} has no layer with a spatial output, so Grad-CAM cannot show "
                         f"where it looked")
    return TargetLayer(spatial[-1], names.get(spatial[-1], type(spatial[-1]).__name__))


@dataclass
class Explanation:
    path: str
    label: str
    score: float
    overlay: Image.Image  # the evaluation crop with the heat map blended in, RGB

    def png(self) -> bytes:
        buffer = io.BytesIO()
        self.overlay.save(buffer, "PNG")
        return buffer.getvalue()


def _gradient_starts_here(_: nn.Module, __: Any, output: torch.Tensor) -> torch.Tensor:
    """The target layer's output as where the graph begins: Grad-CAM needs the gradient of the class score
    with respect to this activation only, so the layers before it record no graph and run no backward pass
    (most of the network: the backward pass to the input cost twice the forward). ``* 1``: a result of an
    operation, not a leaf, so a layer after it may still work in place."""
    return output.detach().requires_grad_(True) * 1


class Explainer:
    """Grad-CAM for one PyTorch network and its preprocessing."""

    def __init__(self, model: nn.Module, classes: Sequence[str], preprocess: Preprocess):
        from pytorch_grad_cam import GradCAM

        # channels_last: on a CPU the convolutions run about 1.5x as fast as in the default layout
        self.model = model.float().eval().to(memory_format=torch.channels_last)
        for parameter in self.model.parameters():  # Grad-CAM needs gradients of the activations only
            parameter.requires_grad_(False)
        self.classes, self.preprocess = list(classes), preprocess
        self.transform = EvalPreset(preprocess)
        self.layer = find_target_layer(self.model, preprocess.img_size)
        # Registered before Grad-CAM's own hooks, which then see (and keep the gradient of) this output.
        self.layer.module.register_forward_hook(_gradient_starts_here)
        self.cam = GradCAM(self.model, [self.layer.module], reshape_transform=self.layer.reshape)

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> Explainer:
        from imgcls.models.checkpoint import load_checkpoint

        from imgcls.models.hf import is_hf_arch

        checkpoint = load_checkpoint(path)
        if is_hf_arch(checkpoint.spec.arch):
            raise ModelError(f"{path}: Grad-CAM overlays are made for timm and built-in models; "
                             f"{checkpoint.spec.name} is a Hugging Face transformers model")
        return cls(checkpoint.build(), checkpoint.classes, checkpoint.preprocess)

    def _crop(self, tensor: torch.Tensor) -> np.ndarray:
        """The preprocessed image as float RGB in [0, 1] (normalisation undone)."""
        mean = torch.tensor(self.preprocess.mean).view(3, 1, 1)
        std = torch.tensor(self.preprocess.std).view(3, 1, 1)
        return (tensor.detach() * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()

    def explain_images(self, images: Sequence[Image.Image], names: Sequence[str],
                       target: str | None = None, batch_size: int = 8) -> list[Explanation]:
        """One overlay per RGB image, for the predicted class (or ``target``, a class name)."""
        from pytorch_grad_cam.utils.image import show_cam_on_image
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        if target is not None and target not in self.classes:
            raise DataError(f"unknown class '{target}'; the model knows {', '.join(self.classes)}")
        results = []
        for start in range(0, len(images), batch_size):
            batch = torch.stack([self.transform(image) for image in images[start:start + batch_size]])
            batch = batch.contiguous(memory_format=torch.channels_last)
            # One forward pass gives both the prediction and the heat map (targets None: the predicted class).
            targets = None if target is None else [ClassifierOutputTarget(self.classes.index(target))] * len(batch)
            heat = self.cam(input_tensor=batch, targets=targets)
            probs = torch.softmax(self.cam.outputs.detach().float(), dim=1)
            chosen = probs.argmax(dim=1).tolist() if target is None else [self.classes.index(target)] * len(batch)
            for offset, (tensor, cam, label) in enumerate(zip(batch, heat, chosen)):
                overlay = show_cam_on_image(self._crop(tensor).astype(np.float32), cam, use_rgb=True,
                                            image_weight=0.55)
                results.append(Explanation(names[start + offset], self.classes[label],
                                           float(probs[offset, label]), Image.fromarray(overlay)))
        return results

    def explain_files(self, paths: Sequence[str], target: str | None = None) -> list[Explanation]:
        """Overlays of image files; unreadable ones are named in a warning and left out."""
        images, names = [], []
        for path in paths:
            try:
                images.append(load_image(path, self.preprocess.resize_size))
                names.append(str(path))
            except ImageLoadError as exc:
                log.warning("skipped %s: %s", path, exc.detail)
        return self.explain_images(images, names, target)


def explainer_for(model_path: str | Path) -> Explainer:
    """The Explainer of a run directory or checkpoint: only PyTorch checkpoints keep the layers Grad-CAM
    needs; exported graphs are refused."""
    from imgcls.inference.predictor import resolve_model_path

    path = Path(model_path)
    path = resolve_model_path(path) if path.is_dir() else path
    if path.suffix.lower() not in (".pt", ".pth", ".ckpt"):
        raise CheckpointError(f"{path}: Grad-CAM needs the PyTorch checkpoint (an exported graph has no layers to "
                              f"look into); pass the run directory or its best.pt")
    return Explainer.from_checkpoint(resolve_model_path(path))


def overlay_paths(paths: Sequence[str], out: Path) -> list[Path]:
    """``out/<stem>.gradcam.png`` per input; equal stems get -2, -3..."""
    taken: dict[str, int] = {}
    result = []
    for path in paths:
        stem = Path(path).stem
        taken[stem] = taken.get(stem, 0) + 1
        result.append(out / (stem + (f"-{taken[stem]}" if taken[stem] > 1 else "") + OVERLAY_SUFFIX))
    return result
