"""Training a model update as a diff: a :class:`fairspeech.training.Trainer` callback, for any model.

    trainer = DiffTrainer("sparse", density=0.1)
    summary = train_update(config, exp_dir, trainer, select_train=lambda rows: rows.utt_id.isin(ids))   # our ASR recipes
    Trainer(users_model, CTCObjective(blank), callbacks=[DiffTrainer("sparse", 0.01)]).fit(plan, epochs)   # any model

The model the run starts from is the base. ``on_train_start`` (:meth:`prepare_model`) records the
SHA-256 of the base weights, freezes them and attaches a zero-initialized diff to every weight through
``torch.nn.utils.parametrize`` (the model then computes base + diff; only the diff is optimized, and
its masks are buffers, so checkpoints resume exactly). ``after_step`` prunes sparse diffs on their
schedule. ``on_train_end`` (:meth:`finalize`) prunes to the exact target density, quantizes the diff
to the file's value type and folds it into plain weights, so the trained model equals, bit for bit,
the base with the diff file (``diff_``) applied.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from fairspeech.asr.train import train
from fairspeech.training.callbacks import Callback
from fairspeech.updates import format as fmt
from fairspeech.updates.hashed import HashedDelta, bucket_count, hashed_delta
from fairspeech.updates.sparse import CRITERIA, SparseDelta, density_at, extract, prune_to, sparse_delta
from fairspeech.utils import distributed

DIFF_FILE = "update.diff.safetensors"


class DiffTrainer(Callback):
    """A callback that trains an update as a sparse or hashed diff from the model it starts from.

    diff_type: "sparse" (pruned to ``density`` of the weights) or "hashed" (``bucket_ratio`` buckets per weight).
    value_dtype: what values are stored (and folded) as: float16 halves the file against float32.
    prune_start, prune_end, prune_every: the sparse schedule, as fractions of the run's steps and a step interval.
    criterion: what a sparse diff keeps when pruning, "magnitude" (``|D|``) or "fisher" (``D^2 * F``); see
        :mod:`fairspeech.updates.sparse`.
    hash_seed: keys the hash of a hashed diff (stored in its header).
    submodule: diff only this submodule of the trained model, names relative to it (``"model"``: the
        transformers model inside an adapter of :mod:`fairspeech.asr.hf`, so the diff's names and base
        hash are those of the user's own checkpoint).
    """

    def __init__(self, diff_type: str = "sparse", density: float = 0.1, bucket_ratio: float = 0.3, value_dtype: str = "float16",
                 prune_start: float = 0.1, prune_end: float = 0.7, prune_every: int = 5, hash_seed: int = 0, criterion: str = "magnitude",
                 submodule: str | None = None):
        self.diff_type = diff_type
        self.density = density
        self.bucket_ratio = bucket_ratio
        self.value_dtype = value_dtype
        self.prune_start = prune_start
        self.prune_end = prune_end
        self.prune_every = prune_every
        self.hash_seed = hash_seed
        self.criterion = criterion
        self.submodule = submodule

    name = "diff"

    def validate(self) -> None:
        if self.diff_type not in fmt.DIFF_TYPES:
            raise ValueError(f"diff_type must be one of {fmt.DIFF_TYPES}, got {self.diff_type!r}")
        if self.value_dtype not in fmt.VALUE_DTYPES:
            raise ValueError(f"value_dtype must be one of {sorted(fmt.VALUE_DTYPES)}, got {self.value_dtype!r}")
        if self.criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {self.criterion!r}")
        if not 0 < self.density <= 1 or not 0 < self.bucket_ratio <= 1:
            raise ValueError(f"density and bucket_ratio must be in (0, 1], got {self.density} and {self.bucket_ratio}")

    # -- callback hooks ------------------------------------------------------------------------------
    def _root(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.get_submodule(self.submodule) if self.submodule else model

    def on_train_start(self, trainer) -> None:
        self.prepare_model(self._root(trainer.model))

    def after_step(self, trainer, step: int) -> None:
        self.prune_step(self._root(trainer.model), step, trainer.total_steps)

    def on_train_end(self, trainer) -> None:
        self.finalize(self._root(trainer.model))

    # -- the diff itself -----------------------------------------------------------------------------
    def prepare_model(self, model: torch.nn.Module) -> None:
        self.validate()
        self.base_sha256_ = fmt.weights_sha256(model.state_dict())
        self.targets_, self.deltas_, self.tied_, self.aliases_ = [], [], {}, []
        owners: dict[int, tuple[str, nn.Module]] = {}  # one diff per tensor: tied weights (Whisper's output projection) share it
        for prefix, module in list(model.named_modules()):
            for name, weight in list(module._parameters.items()):
                if weight is None:
                    continue
                full_name = f"{prefix}.{name}" if prefix else name
                if id(weight) in owners:
                    primary, delta = owners[id(weight)]
                    self.tied_[full_name] = primary
                    parametrize.register_parametrization(module, name, delta, unsafe=True)
                    module.parametrizations[name].original.requires_grad_(False)
                    self.aliases_.append((module, name))
                    continue
                weight.requires_grad_(False)
                if self.diff_type == "sparse":
                    delta = SparseDelta(weight.shape, track_fisher=self.criterion == "fisher")
                else:
                    delta = HashedDelta(full_name, weight.shape, bucket_count(weight.numel(), self.bucket_ratio), self.hash_seed)
                delta.to(weight.device)
                owners[id(weight)] = (full_name, delta)
                parametrize.register_parametrization(module, name, delta)
                module.parametrizations[name].original.requires_grad_(False)
                self.targets_.append((full_name, module, name))
                self.deltas_.append(delta)
        self.kept_ = None

    def prune_step(self, model: torch.nn.Module, step: int, total_steps: int) -> None:
        if self.diff_type != "sparse":
            return
        if self.criterion == "fisher":
            for delta in self.deltas_:
                delta.observe()
        if step % self.prune_every == 0 or step >= self.prune_end * total_steps:
            self.kept_ = prune_to(self.deltas_, density_at(step, total_steps, self.density, self.prune_start, self.prune_end), self.criterion)

    @torch.no_grad()
    def finalize(self, model: torch.nn.Module) -> None:
        dtype = fmt.VALUE_DTYPES[self.value_dtype]
        if self.diff_type == "sparse":
            prune_to(self.deltas_, self.density, self.criterion)  # exactly the target, however few steps the run had
        tensors, shapes = {}, {}
        for (full_name, module, name), delta in zip(self.targets_, self.deltas_):
            base = module.parametrizations[name].original.detach()
            shape = list(base.shape)
            if self.diff_type == "sparse":
                indices, values = extract(delta, dtype)
                tensors[full_name + ".indices"], tensors[full_name + ".values"] = indices, values
                change = sparse_delta(indices, values, shape)
            else:
                buckets = delta.buckets.detach().to(dtype)
                tensors[full_name + ".buckets"] = buckets
                change = hashed_delta(buckets, shape, full_name, self.hash_seed)
            updated = fmt.fold(base, change)
            parametrize.remove_parametrizations(module, name, leave_parametrized=False)
            weight = getattr(module, name)
            weight.copy_(updated)  # in place: a tied alias holds the same tensor
            weight.requires_grad_(True)
            shapes[full_name] = shape
        for module, name in self.aliases_:
            parametrize.remove_parametrizations(module, name, leave_parametrized=False)
        extra = {"hash_seed": self.hash_seed} if self.diff_type == "hashed" else {}
        if self.tied_:
            extra["tied"] = dict(sorted(self.tied_.items()))
        self.diff_ = fmt.Diff(fmt.make_header(self.diff_type, tensors, shapes, self.base_sha256_, fmt.weights_sha256(model.state_dict()),
                                              self.value_dtype, extra), tensors)


def train_update(config, exp_dir: str | Path, trainer: DiffTrainer | None, select_train=None) -> dict:
    """Train one update with the ASR loop; with a ``trainer`` also write ``exp_dir/update.diff.safetensors``.

    Without a trainer this is a full-parameter update (the comparison every diff is held to).
    """
    exp_dir = Path(exp_dir)
    summary = train(config, exp_dir, callbacks=[trainer] if trainer is not None else [], select_train=select_train)
    if trainer is not None and distributed.is_main():
        fmt.write_diff(exp_dir / DIFF_FILE, trainer.diff_)
        summary["diff"] = {k: trainer.diff_.header[k] for k in ("diff_type", "density", "entries", "parameters", "value_dtype")}
    return summary


def update_config(base_path: str | Path, overrides: Sequence[str] = (), seed: int = 0):
    """The training config of an update from ``base_path``: the base model's own config (same model,
    data and tokenizer), initialized from it, no dev passes, then ``section.key=value`` overrides."""
    from fairspeech.training import checkpoint as ckpt
    from fairspeech.asr.config import dict_to_config, parse_override

    _, meta = ckpt.load_weights(base_path)
    tree = json.loads(json.dumps(meta["config"]))
    tree["train"].update({"init_from": str(base_path), "seed": seed, "dev_every": 0})
    for text in overrides:
        key, value = parse_override(text)
        section, _, field = key.partition(".")
        if section not in tree or not isinstance(tree[section], dict) or not field:
            raise KeyError(f"{text!r}: expected SECTION.KEY=VALUE with a known section")
        tree[section][field] = value
    return dict_to_config(tree)
