"""The encoder is streaming: a frame never depends on audio after the end of its chunk."""

import torch

from fairspeech.asr.ctc_model import CTCModel
from fairspeech.asr.encoder import EncoderConfig, streaming_bias


def test_streaming_bias_allows_own_chunk_and_left_chunks_only():
    bias = streaming_bias(torch.tensor([10]), 10, chunk_size=2, left_chunks=1)[0, 0]
    allowed = bias == 0
    assert allowed[4].tolist() == [False, False, True, True, True, True, False, False, False, False]
    assert allowed[5].tolist() == allowed[4].tolist()
    padded = streaming_bias(torch.tensor([3]), 6, chunk_size=2, left_chunks=4)[0, 0] == 0
    assert not padded[2, 3] and padded[5, 5]  # keys past the length are hidden; the diagonal stays open


def test_model_output_ignores_audio_after_the_chunk():
    torch.manual_seed(0)
    config = EncoderConfig(dim=32, heads=2, ff_dim=64, layers=3, subsampling_channels=8, chunk_size=4, left_chunks=2, conv_kernel=5)
    model = CTCModel(config, 10).eval()
    features = torch.randn(1, 400, 80)
    changed = features.clone()
    changed[:, 200:] = torch.randn(1, 200, 80)  # new audio from 2.0 s on
    with torch.no_grad():
        a = model(features, torch.tensor([400])).log_probs[0]
        b = model(changed, torch.tensor([400])).log_probs[0]
    # Encoder frame i reads features 4i..4i+6: frames up to 48 see only the unchanged audio, and
    # frames of chunks ending at or before frame 47 must be unaffected.
    assert torch.equal(a[:48], b[:48])
    assert not torch.allclose(a[48:], b[48:])
