"""Channel alignment to a profile's parallelism factor."""

import pytest

from fairspeech.asr.encoder import EncoderConfig
from fairspeech.hardware.channels import align_channels, align_encoder_config, align_widths, alignment_effect
from fairspeech.accelerator import load_profile
from fairspeech.hardware.zoo import ArchSpec


@pytest.mark.parametrize("channels, multiple, mode, expected", [
    (250, 16, "up", 256), (256, 16, "up", 256), (257, 16, "up", 272),
    (250, 16, "down", 240), (250, 16, "nearest", 256), (244, 16, "nearest", 240),
    (5, 16, "down", 16), (5, 16, "nearest", 16),  # never below one group
    (100, 1, "up", 100),
])
def test_align_channels(channels, multiple, mode, expected):
    assert align_channels(channels, multiple, mode) == expected


def test_align_channels_rejects_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        align_channels(10, 16, "sideways")
    with pytest.raises(ValueError, match="positive"):
        align_channels(0, 16)


def test_model_dimension_stays_divisible_by_heads():
    spec = ArchSpec("transformer", {"dim": 150, "heads": 6, "ff_dim": 600, "layers": 2}, 2.0)
    aligned = align_widths(spec, 32, "up")
    assert aligned.config["dim"] == 192  # the first multiple of lcm(32, 6) = 96 above 150
    assert aligned.config["ff_dim"] == 608
    assert aligned.config["subsampling_channels"] == 32  # taken from EncoderConfig's default, already aligned
    assert aligned.config["layers"] == 2 and aligned.seconds == 2.0


def test_align_encoder_config():
    config = align_encoder_config(EncoderConfig(dim=250, heads=2, ff_dim=1000, subsampling_channels=20), 16, "nearest")
    assert (config.dim, config.ff_dim, config.subsampling_channels, config.heads) == (256, 1008, 16, 2)


def test_unknown_family_is_an_error():
    with pytest.raises(ValueError, match="family"):
        align_widths(ArchSpec("asr", {"kind": "ctc"}), 16)


def test_shedding_a_partial_lane_group_is_estimated_faster_on_the_neural_engine():
    spec = ArchSpec("conv", {"channels": 40, "blocks": 2, "kernel": 5}, 1.0)  # 40 channels = 32 + a group of 8 on 32 lanes
    profile = load_profile("neural_engine_like")
    down = alignment_effect(spec, profile, "down")
    assert down.aligned.startswith("conv[blocks2-channels32-")
    assert down.latency_change < -0.15 and down.aligned_params_bytes < down.original_params_bytes
    up = alignment_effect(spec, profile, "up")  # 64: as many output lane groups as 40, but more input channels to each
    assert up.aligned_latency_s > up.original_latency_s
