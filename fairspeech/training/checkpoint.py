"""Checkpoints in safetensors: model weights, optimizer state and torch's RNG state as tensors, with a
JSON sidecar for everything else (step, epoch, position in the epoch, optimizer hyper-parameters).

``step-00000400.safetensors`` is written first and its ``.json`` sidecar second, both atomically, so
a checkpoint counts only once its sidecar exists: a run killed mid-write resumes from the previous
one. ``torch.load`` is never used.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from fairspeech.utils import io

_NAME = re.compile(r"step-(\d{8})\.json$")


def unshared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` detached and contiguous, tied tensors (one storage under two names, as transformers ties
    input and output embeddings) copied apart: safetensors refuses shared storage."""
    seen, out = set(), {}
    for name, tensor in state.items():
        tensor = tensor.detach().contiguous()
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset()) if tensor.numel() else None
        out[name] = tensor.clone() if key in seen else tensor
        seen.add(key)
    return out


def _paths(directory: Path, step: int) -> tuple[Path, Path]:
    stem = directory / f"step-{step:08d}"
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``optimizer.state_dict()`` into tensors (for safetensors) and plain data (for JSON)."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{name}"] = value.contiguous()
            else:
                scalars[f"{index}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_tensors(tensors: dict[str, torch.Tensor], plain: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for key, value in plain["scalars"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    groups = [{k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()} for g in plain["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_checkpoint(directory: str | Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer, progress: dict, keep: int = 2,
                    extra: dict[str, torch.nn.Module] | None = None) -> Path:
    """Write checkpoint ``step``; keep the newest ``keep`` checkpoints. ``progress`` must be JSON-ready.

    ``extra``: further modules (a reweighter's adversary and embedding bank), saved under their names.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights, sidecar = _paths(directory, step)
    tensors = {f"model.{k}": v for k, v in unshared(model.state_dict()).items()}
    for name, module in (extra or {}).items():
        tensors.update({f"{name}.{k}": v for k, v in unshared(module.state_dict()).items()})
    opt_tensors, opt_plain = optimizer_to_tensors(optimizer)
    tensors.update(opt_tensors)
    tensors["rng.torch"] = torch.get_rng_state()
    with io.atomic_path(weights) as tmp:
        save_file(tensors, str(tmp))
    io.write_json(sidecar, {"step": step, "progress": progress, "optimizer": opt_plain})
    for old in list_checkpoints(directory)[:-keep]:
        for path in _paths(directory, old):
            path.unlink(missing_ok=True)
    return weights


def list_checkpoints(directory: str | Path) -> list[int]:
    """Steps of complete checkpoints (weights and sidecar both present), oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    steps = []
    for path in directory.iterdir():
        match = _NAME.match(path.name)
        if match and _paths(directory, int(match.group(1)))[0].exists():
            steps.append(int(match.group(1)))
    return sorted(steps)


def load_checkpoint(directory: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None, step: int | None = None,
                    extra: dict[str, torch.nn.Module] | None = None) -> dict | None:
    """Restore the newest (or the given) checkpoint into ``model``/``optimizer``/``extra`` and torch's RNG.

    Returns the sidecar (``step``, ``progress``), or None when the directory holds no checkpoint.
    """
    steps = list_checkpoints(directory)
    if not steps:
        return None
    step = steps[-1] if step is None else step
    weights, sidecar = _paths(Path(directory), step)
    tensors = load_file(str(weights))
    meta = json.loads(sidecar.read_text(encoding="utf-8"))
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
    for name, module in (extra or {}).items():
        module.load_state_dict({k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")})
    if optimizer is not None:
        optimizer.load_state_dict(optimizer_from_tensors(tensors, meta["optimizer"]))
    torch.set_rng_state(tensors["rng.torch"].cpu())
    return meta


def save_model(path: str | Path, model: torch.nn.Module, metadata: dict) -> None:
    """Final weights only, ``path`` (.safetensors) plus ``path`` with .json: what evaluation needs to rebuild the model."""
    path = Path(path)
    with io.atomic_path(path) as tmp:
        save_file(unshared(model.state_dict()), str(tmp))
    io.write_json(path.with_suffix(".json"), metadata)


def load_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    path = Path(path)
    return load_file(str(path)), json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
