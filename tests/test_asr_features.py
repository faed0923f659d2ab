import numpy as np
import pytest
import torch

from fairspeech.asr.features import GlobalCMVN, LogMel, SpecAugment, mel_filterbank
from fairspeech.asr.tokenizer import CharTokenizer


def test_logmel_shape_and_determinism():
    logmel = LogMel()
    wave = torch.randn(2, 16000, generator=torch.Generator().manual_seed(0))
    a, b = logmel(wave), logmel(wave.clone())
    assert a.shape == (2, (16000 - 400) // 160 + 1, 80) == (2, logmel.num_frames(16000), 80)
    assert torch.equal(a, b)
    assert torch.equal(logmel(wave[0]), a[0])  # an unbatched waveform gives the same frames


def test_logmel_puts_a_tone_in_the_right_mel_band():
    logmel = LogMel()
    t = torch.arange(16000) / 16000
    for freq in (300.0, 1000.0, 4000.0):
        peak_band = int(logmel(torch.sin(2 * np.pi * freq * t)).mean(0).argmax())
        # The band whose filter peaks nearest the tone's frequency.
        centers = mel_filterbank(257, 80, 16000, 20.0, 7600.0).argmax(0) * 8000 / 256
        assert abs(float(centers[peak_band]) - freq) < 0.1 * freq + 40


def test_mel_filters_are_triangles_peaking_at_one():
    fb = mel_filterbank(257, 40, 16000, 0.0, 8000.0)
    assert fb.shape == (257, 40)
    assert float(fb.min()) == 0.0 and float(fb.max()) <= 1.0
    assert (fb.max(0).values > 0.5).all()  # every filter catches at least one FFT bin near its peak


def test_cmvn_normalizes_with_given_stats():
    cmvn = GlobalCMVN(3)
    cmvn.set_stats(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 2.0, 0.5]))
    out = cmvn(torch.tensor([[3.0, 2.0, 2.0]]))
    assert torch.allclose(out, torch.tensor([[1.0, 0.0, -2.0]]))


def test_specaugment_masks_in_training_only():
    torch.manual_seed(0)
    aug = SpecAugment(freq_masks=2, freq_width=10, time_masks=2, time_width=10, time_mask_ratio=0.2)
    x = torch.ones(2, 100, 80)
    lengths = torch.tensor([100, 60])
    aug.eval()
    assert torch.equal(aug(x, lengths), x)
    aug.train()
    out = aug(x, lengths)
    assert 0 < float((out == 0).float().mean()) < 0.5
    assert set(out.unique().tolist()) <= {0.0, 1.0}


def test_tokenizer_round_trip_and_normalization():
    tok = CharTokenizer()
    text = "Set a timer for twenty-five minutes, don't wait!"
    ids = tok.encode(text)
    assert tok.blank_id == 0 and 0 not in ids and max(ids) < tok.vocab_size
    assert tok.decode(ids) == "set a timer for twenty five minutes don't wait"
    with pytest.raises(ValueError, match="not in the tokenizer"):
        tok.encode("café")


def test_tokenizer_from_texts_adds_characters_and_reloads(tmp_path):
    tok = CharTokenizer.from_texts(["call zoë at 9"])
    assert "ë" in tok.characters and "9" in tok.characters
    tok.save(tmp_path / "tok.json")
    again = CharTokenizer.load(tmp_path / "tok.json")
    assert again.characters == tok.characters
    assert again.decode(again.encode("Call Zoë at 9")) == "call zoë at 9"


def test_bpe_learns_frequent_words_and_round_trips(tmp_path):
    from fairspeech.asr.tokenizer import BPETokenizer, tokenizer_from_dict

    texts = ["set a timer for five minutes", "set an alarm for five", "turn off the lights", "Set the TIMER!"] * 5
    tok = BPETokenizer.train(texts, merges=40)
    assert "\u2581set" in tok.pieces and "\u2581timer" in tok.pieces  # frequent words become single pieces
    for text in texts + ["offset timers"]:  # an unseen word is spelled with smaller pieces
        ids = tok.encode(text)
        assert 0 not in ids and tok.decode(ids) == tok.normalize(text)
    assert len(tok.encode("set a timer")) == 3
    tok.save(tmp_path / "bpe.json")
    again = tokenizer_from_dict(__import__("json").loads((tmp_path / "bpe.json").read_text()))
    assert again.encode("turn off the timer") == tok.encode("turn off the timer")
    with pytest.raises(ValueError, match="not in the tokenizer"):
        tok.encode("zebra")


def test_frequency_warp_moves_spectral_peaks_by_the_factor():
    from fairspeech.asr.features import frequency_warp, hz_to_mel, mel_centers

    centers = mel_centers(80)
    features = torch.zeros(3, 5, 80)
    features[:, :, 40] = 1.0  # a peak at filter 40
    warped = frequency_warp(features, torch.tensor([1.0, 1.12, 1 / 1.12]), centers)
    assert torch.allclose(warped[0], features[0])  # factor 1: unchanged
    peak = warped[:, 0].argmax(-1).tolist()
    assert peak[1] > 40 > peak[2]  # up for a higher voice, down for a lower one
    # the peak lands where filter 40's frequency times the factor falls on the mel axis
    step = (hz_to_mel(centers[-1]) - hz_to_mel(centers[0])) / 79
    expected = (hz_to_mel(centers[40] * 1.12) - hz_to_mel(centers[0])) / step
    assert abs(peak[1] - float(expected)) <= 1


def test_specaugment_warps_only_in_training():
    from fairspeech.asr.features import SpecAugment

    augment = SpecAugment(freq_masks=0, time_masks=0, freq_warp=0.12)
    x = torch.randn(2, 30, 80)
    lengths = torch.tensor([30, 30])
    assert torch.equal(augment.eval()(x, lengths), x)
    torch.manual_seed(0)
    assert not torch.allclose(augment.train()(x, lengths), x)
