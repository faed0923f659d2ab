"""Elastic weight consolidation for CTC recognizers (Kirkpatrick et al. 2017; for ASR cohorts, Trinh et al.,
"Reducing geographic disparities in automatic speech recognition via elastic weight consolidation").

Fine-tuning on the worst cohorts moves every weight; EWC charges each move by how much the
pre-update model's likelihood on the *whole population* depends on that weight:

    loss = CTC(target cohorts) + lambda / 2 * sum_i F_i (theta_i - theta*_i)^2

with ``F`` the diagonal Fisher information of the pre-update model ``theta*``.

:class:`DiagonalFisher` estimates ``F`` from per-utterance gradients of ``-log p(y | x)``: each
utterance is its own backward pass (``torch.func.grad`` of a functional call on a batch of one,
through the training layer's objective, so any model under the protocol works: ours, a transformers
``Wav2Vec2ForCTC`` or, with :class:`fairspeech.training.Seq2SeqObjective`, Whisper), so
the estimate is a mean of squared *per-sample* gradients and does not shrink with the batch size the
way a squared mini-batch gradient does. (``vmap`` over a padded batch is not used: the streaming
encoder derives masks from each utterance's length and ``ctc_loss`` has no batching rule.)

* ``kind="empirical"``: ``y`` is the reference transcript;
* ``kind="sampled"``: ``y`` is drawn from the model itself (the true Fisher): a CTC path sampled frame
  by frame and collapsed, which is an exact draw from ``p(y | x)`` since CTC sums over paths.

Squares are accumulated in float32 on the model's device whatever the model's dtype. ``normalize=True`` rescales ``F`` to
mean 1, so one lambda means the same pull on another model or Fisher sample size. Under ``torchrun``
each rank takes every world_size-th utterance and the sums are all-reduced, which equals the single
process estimate (tested).

:class:`OnlineEWC` keeps the consolidated Fisher and anchor across repeated updates (Schwarz et al.
2018): ``F <- gamma * F_old + F_new`` and the anchor moves to the newest pre-update weights. Its
:meth:`OnlineEWC.callback` plugs its penalty into :class:`fairspeech.training.Trainer`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch.func import functional_call, grad
from torch.nn import functional as F
from tqdm.auto import tqdm

from fairspeech.training.callbacks import Regularizer
from fairspeech.training.protocol import CTCObjective, as_asr_output, model_device, move_to
from fairspeech.utils import distributed, io

KINDS = ("empirical", "sampled")


def sample_ctc_labels(log_probs: torch.Tensor, blank_id: int, generator: torch.Generator) -> torch.Tensor:
    """One label sequence drawn from a CTC model's ``p(y | x)``: a path sampled frame by frame, repeats merged, blanks dropped.

    ``log_probs``: (frames, vocab) of one utterance.
    """
    path = torch.multinomial(log_probs.detach().float().exp().cpu(), 1, generator=generator).squeeze(1)
    keep = torch.ones_like(path, dtype=torch.bool)
    keep[1:] = path[1:] != path[:-1]
    labels = path[keep]
    return labels[labels != blank_id]


def effective_weight(model: torch.nn.Module, name: str) -> torch.Tensor:
    """The weight ``name`` as the model computes with it: through a parametrization (a diff being
    trained: base + delta) where one is attached, so EWC charges the change a diff makes."""
    prefix, _, leaf = name.rpartition(".")
    try:
        return getattr(model.get_submodule(prefix) if prefix else model, leaf)
    except AttributeError:
        raise KeyError(f"the EWC state has parameter {name!r}, the model does not (another model's Fisher?)") from None


def trainable_parameters(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


class DiagonalFisher:
    """Diagonal Fisher information of a CTC model from per-utterance gradients; see the module docstring.

    Parameters: ``kind`` (empirical or sampled), ``normalize`` (rescale to mean 1), ``blank_id``,
    ``seed`` (label sampling: utterance ``i`` draws with seed ``(seed, i)``, so sharding cannot change
    the draws), ``progress``.
    Learned: ``fisher_`` (name -> float32 tensor), ``n_samples_``, ``scale_`` (the factor applied by
    normalization, 1.0 without), ``raw_mean_`` (mean of the unnormalized estimate).
    """

    def __init__(self, kind: str = "empirical", normalize: bool = True, blank_id: int = 0, seed: int = 0, progress: bool = True):
        self.kind = kind
        self.normalize = normalize
        self.blank_id = blank_id
        self.seed = seed
        self.progress = progress

    def fit(self, model: torch.nn.Module, data, indices: Sequence[int] | None = None, objective=None) -> "DiagonalFisher":
        """``data``: anything with ``len`` and ``batch(indices)`` returning a batch with ``features``,
        ``lengths``, ``targets``, ``target_lengths`` (a :class:`fairspeech.asr.data.SplitData` with
        references, a :class:`fairspeech.asr.hf.WaveformData`): the population's utterances;
        ``indices``: which of its utterances to use (default all); ``objective``: how the model scores a
        batch (default :class:`~fairspeech.training.CTCObjective` with ``blank_id``); its ``nll`` is the
        likelihood differentiated. The sampled Fisher needs a CTC model."""
        if self.kind not in KINDS:
            raise ValueError(f"Fisher kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "empirical" and getattr(data, "targets", True) is None:
            raise ValueError("the empirical Fisher needs reference transcripts: build SplitData with references and a tokenizer")
        objective = objective if objective is not None else CTCObjective(self.blank_id)
        if self.kind == "sampled" and not isinstance(objective, CTCObjective):
            raise ValueError("the sampled Fisher draws CTC label paths: it needs a CTC objective (use kind='empirical')")
        indices = list(range(len(data)) if indices is None else indices)
        if not indices:
            raise ValueError("no utterances to estimate the Fisher information from")
        was_training = model.training
        model.eval()  # no dropout or SpecAugment: the Fisher of the deployed model
        device = model_device(model)
        params = {name: p.detach() for name, p in trainable_parameters(model).items()}
        buffers = {name: b.detach() for name, b in model.named_buffers()}
        sums = {name: torch.zeros(p.shape, dtype=torch.float32, device=p.device) for name, p in params.items()}
        blank = objective.blank_id if isinstance(objective, CTCObjective) else None

        def sampled_nll(weights, batch, generator):
            out = as_asr_output(functional_call(model, (weights, buffers), (batch.features, batch.lengths)))
            log_probs = out.log_probs[0, : int(out.lengths[0])]
            labels = sample_ctc_labels(log_probs, blank, generator).to(log_probs.device)
            return F.ctc_loss(log_probs.float(), labels, log_probs.shape[:1], labels.shape[:1], blank=blank, reduction="sum", zero_infinity=True)

        def empirical_nll(weights, batch, generator):
            call = lambda *args: functional_call(model, (weights, buffers), args)  # noqa: E731
            scored = objective(call, batch)
            return objective.nll(scored.output, batch).sum()

        per_sample_grad = grad(sampled_nll if self.kind == "sampled" else empirical_nll)
        mine = indices[distributed.rank() :: distributed.world_size()]  # every rank its share; the sums are reduced below
        count = 0
        for i in tqdm(mine, desc=f"Fisher ({self.kind})", disable=not (self.progress and distributed.is_main()), mininterval=5.0):
            batch = move_to(data.batch([i]), device)
            generator = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, int(i)]).generate_state(1)[0]))
            gradients = per_sample_grad(params, batch, generator)
            for name, g in gradients.items():
                sums[name] += g.detach().float() ** 2
            count += 1
        model.train(was_training)
        total = distributed.all_reduce_sum(torch.tensor([float(count)], dtype=torch.float64, device=device))
        for tensor in sums.values():
            distributed.all_reduce_sum(tensor)
        self.n_samples_ = int(total.item())
        fisher = {name: s / self.n_samples_ for name, s in sums.items()}
        self.raw_mean_ = float(sum(f.double().sum() for f in fisher.values()) / sum(f.numel() for f in fisher.values()))
        self.scale_ = 1.0 / self.raw_mean_ if self.normalize and self.raw_mean_ > 0 else 1.0
        self.fisher_ = {name: f * self.scale_ for name, f in fisher.items()}
        return self


class OnlineEWC:
    """Consolidated diagonal Fisher and anchor weights over repeated updates; the EWC penalty.

    ``gamma`` discounts older updates' Fisher (1.0: plain sum, as in separate EWC penalties sharing
    one anchor). Learned by :meth:`consolidate`: ``fisher_``, ``anchor_`` (name -> float32 tensors),
    ``n_updates_``.
    """

    def __init__(self, gamma: float = 1.0):
        self.gamma = gamma

    def consolidate(self, model: torch.nn.Module, fisher: dict[str, torch.Tensor]) -> "OnlineEWC":
        """Fold ``fisher`` (of ``model``'s current, pre-update weights) in and anchor at those weights."""
        params = trainable_parameters(model)
        missing = sorted(set(fisher) - set(params))
        if missing:
            raise KeyError(f"Fisher entries {missing[:5]} are not trainable parameters of the model")
        for name, value in fisher.items():
            if value.shape != params[name].shape:
                raise ValueError(f"Fisher entry {name!r} has shape {tuple(value.shape)}, parameter has {tuple(params[name].shape)}")
        previous = getattr(self, "fisher_", None)
        self.fisher_ = {name: value.float().clone() + (self.gamma * previous[name] if previous and name in previous else 0.0)
                        for name, value in sorted(fisher.items())}  # sorted: the same summation order once saved and loaded
        self.fisher_ = {name: value.to(params[name].device) for name, value in self.fisher_.items()}
        self.anchor_ = {name: params[name].detach().float().clone() for name in self.fisher_}
        self.n_updates_ = getattr(self, "n_updates_", 0) + 1
        return self

    def distance(self, model: torch.nn.Module) -> torch.Tensor:
        """``sum_i F_i (theta_i - theta*_i)^2`` (differentiable in the model's weights)."""
        total = None
        for name, fisher in self.fisher_.items():
            p = effective_weight(model, name)
            term = (fisher.to(p.device) * (p.float() - self.anchor_[name].to(p.device)) ** 2).sum()
            total = term if total is None else total + term
        return total if total is not None else torch.zeros(())

    def penalty(self, model: torch.nn.Module, lam: float) -> torch.Tensor:
        return 0.5 * lam * self.distance(model)

    def regularizer(self, lam: float):
        """The penalty as a function ``(model, batch, output) -> (lambda/2 * distance, stats)``."""

        def hook(model, batch, output):
            distance = self.distance(model)
            return 0.5 * lam * distance, {"ewc_distance": float(distance.detach())}

        return hook

    def callback(self, lam: float) -> Regularizer:
        """The penalty as a :class:`fairspeech.training.Trainer` callback."""
        return Regularizer(self.regularizer(lam))

    def save(self, path: str | Path, meta: dict | None = None) -> None:
        path = Path(path)
        tensors = {f"fisher.{k}": v.contiguous() for k, v in self.fisher_.items()}
        tensors.update({f"anchor.{k}": v.contiguous() for k, v in self.anchor_.items()})
        with io.atomic_path(path) as tmp:
            save_file(tensors, str(tmp))
        io.write_json(path.with_suffix(".json"), {"gamma": self.gamma, "n_updates": self.n_updates_, **(meta or {})})

    @classmethod
    def load(cls, path: str | Path) -> "OnlineEWC":
        import json

        path = Path(path)
        sidecar = path.with_suffix(".json")
        if not path.exists() or not sidecar.exists():
            raise FileNotFoundError(f"{path}: no consolidated EWC state (need the .safetensors and its .json)")
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        tensors = load_file(str(path))
        ewc = cls(gamma=meta["gamma"])
        ewc.fisher_ = {k[len("fisher."):]: v for k, v in sorted(tensors.items()) if k.startswith("fisher.")}
        ewc.anchor_ = {k[len("anchor."):]: v for k, v in tensors.items() if k.startswith("anchor.")}
        ewc.n_updates_ = int(meta["n_updates"])
        ewc.meta_ = meta
        return ewc
