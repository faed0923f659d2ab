"""CTC decoding: greedy (best path) and prefix beam search, on per-frame log-probabilities."""

from __future__ import annotations

import math
from collections import defaultdict
import numpy as np
import torch

NEG_INF = -math.inf


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = 0) -> list[list[int]]:
    """Best path per utterance: argmax per frame, repeats merged, blanks removed."""
    best = log_probs.argmax(dim=-1)
    out = []
    for b in range(best.shape[0]):
        path = torch.unique_consecutive(best[b, : int(lengths[b])])
        out.append([int(i) for i in path if i != blank])
    return out


def _logadd(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    return max(a, b) + math.log1p(math.exp(-abs(a - b)))


def prefix_beam_search(log_probs: np.ndarray, beam: int = 8, blank: int = 0, prune: float = -12.0) -> list[int]:
    """CTC prefix beam search without a language model on one utterance's (frames, vocab) log-probs.

    Each prefix keeps two scores, ending in blank and ending in its last token, so that repeated
    characters are only merged when no blank separates them. Tokens below ``prune`` (log-prob) at a
    frame are not expanded, except the frame's best token.
    """
    beams: dict[tuple, list[float]] = {(): [0.0, NEG_INF]}  # prefix -> [log p(ends in blank), log p(ends in token)]
    for frame in log_probs:
        keep = np.flatnonzero(frame > prune)
        if keep.size == 0:
            keep = np.array([int(frame.argmax())])
        nxt: dict[tuple, list[float]] = defaultdict(lambda: [NEG_INF, NEG_INF])
        for prefix, (p_blank, p_token) in beams.items():
            total = _logadd(p_blank, p_token)
            last = prefix[-1] if prefix else None
            for c in keep:
                c = int(c)
                p = float(frame[c])
                if c == blank:
                    entry = nxt[prefix]
                    entry[0] = _logadd(entry[0], total + p)
                elif c == last:
                    # "aa" without blank stays "a"; "a_a" becomes "aa".
                    same = nxt[prefix]
                    same[1] = _logadd(same[1], p_token + p)
                    extended = nxt[prefix + (c,)]
                    extended[1] = _logadd(extended[1], p_blank + p)
                else:
                    extended = nxt[prefix + (c,)]
                    extended[1] = _logadd(extended[1], total + p)
        ranked = sorted(nxt.items(), key=lambda item: _logadd(*item[1]), reverse=True)
        beams = dict(ranked[:beam])
    best = max(beams.items(), key=lambda item: _logadd(*item[1]))[0]
    return [c for c in best if c != blank]


def beam_decode(log_probs: torch.Tensor, lengths: torch.Tensor, beam: int = 8, blank: int = 0) -> list[list[int]]:
    array = log_probs.detach().float().cpu().numpy()
    return [prefix_beam_search(array[b, : int(lengths[b])], beam, blank) for b in range(array.shape[0])]


def decode(log_probs: torch.Tensor, lengths: torch.Tensor, method: str = "greedy", beam: int = 8) -> list[list[int]]:
    if method == "greedy":
        return greedy_decode(log_probs, lengths)
    if method == "beam":
        return beam_decode(log_probs, lengths, beam)
    raise ValueError(f"decoding method must be 'greedy' or 'beam', not {method!r}")

