import math

import numpy as np
import torch

from fairspeech.asr.decode import beam_decode, greedy_decode, prefix_beam_search


def _peaked(paths, vocab=5, peak=0.97):
    """(batch, frames, vocab) log-probs with ``peak`` mass on each frame's given token."""
    frames = max(len(p) for p in paths)
    probs = np.full((len(paths), frames, vocab), (1 - peak) / (vocab - 1))
    for b, path in enumerate(paths):
        for t, token in enumerate(path):
            probs[b, t] = (1 - peak) / (vocab - 1)
            probs[b, t, token] = peak
    return torch.tensor(np.log(probs), dtype=torch.float32), torch.tensor([len(p) for p in paths])


def test_greedy_and_beam_agree_on_a_peaked_distribution():
    paths = [[0, 1, 1, 0, 1, 2, 2, 0, 3], [4, 4, 0, 0, 2, 0, 2, 2]]
    log_probs, lengths = _peaked(paths)
    expected = [[1, 1, 2, 3], [4, 2, 2]]  # repeats merge unless a blank separates them
    assert greedy_decode(log_probs, lengths) == expected
    assert beam_decode(log_probs, lengths, beam=4) == expected


def test_beam_sums_paths_that_greedy_cannot():
    # Two frames, tokens {blank, a}. Best single path is blank-blank (0.36) -> "", but "a" collects
    # a-a, a-blank and blank-a: 0.16 + 0.24 + 0.24 = 0.64.
    p = np.log(np.array([[[0.6, 0.4], [0.6, 0.4]]]))
    log_probs, lengths = torch.tensor(p, dtype=torch.float32), torch.tensor([2])
    assert greedy_decode(log_probs, lengths) == [[]]
    assert beam_decode(log_probs, lengths, beam=4) == [[1]]


def test_beam_respects_lengths_and_empty_input():
    log_probs, _ = _peaked([[1, 0, 2, 0, 3]])
    assert beam_decode(log_probs, torch.tensor([3]), beam=3) == [[1, 2]]
    assert prefix_beam_search(np.zeros((0, 4)), beam=3) == []
    assert math.isfinite(float(log_probs.sum()))
