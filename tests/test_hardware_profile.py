"""Accelerator profiles: the shipped files, and errors that name the file and the field."""

import pytest

from fairspeech.hardware.costs import shipped_profile_names
from fairspeech.accelerator import ProfileError, load_profile


def test_shipped_profiles_load():
    names = shipped_profile_names()
    assert {"single_thread_650mflops", "cpu_host", "neural_engine_like"} <= set(names)
    profiles = {n: load_profile(n) for n in names}
    assert profiles["single_thread_650mflops"].peak_flops == 650e6
    assert profiles["neural_engine_like"].parallelism == 32 and profiles["neural_engine_like"].precisions[0] == "fp16"
    host = profiles["cpu_host"]  # measured: a vector CPU core does tens of GFLOP/s or more
    assert host.peak_flops > 1e9 and host.parallelism in (4, 8, 16) and host.memory_bandwidth > 1e8


def write(tmp_path, text: str):
    path = tmp_path / "device.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, field, message", [
    ('name = "d"\n', "peak_flops", "missing"),
    ('peak_flops = "fast"\n', "peak_flops", "positive number"),
    ("peak_flops = -1.0\n", "peak_flops", "positive number"),
    ("peak_flops = 1e9\nparallelism = 0\n", "parallelism", "at least 1"),
    ("peak_flops = 1e9\nparallelism = 2.5\n", "parallelism", "integer"),
    ("peak_flops = 1e9\nmemory_bandwidth = true\n", "memory_bandwidth", "positive number"),
    ("peak_flops = 1e9\nonchip_memory = -4\n", "onchip_memory", "non-negative"),
    ('peak_flops = 1e9\nprecisions = "fp16"\n', "precisions", "list of strings"),
    ("peak_flops = 1e9\nprecisions = []\n", "precisions", "non-empty"),
    ("peak_flops = 1e9\nclock_hz = 1e9\n", "clock_hz", "unknown"),
])
def test_invalid_profiles_name_file_and_field(tmp_path, text, field, message):
    path = write(tmp_path, text)
    with pytest.raises(ProfileError, match=message) as error:
        load_profile(path)
    assert error.value.field == field and error.value.path == path
    assert str(path) in str(error.value) and repr(field) in str(error.value)


def test_unreadable_toml_names_the_file(tmp_path):
    path = write(tmp_path, "peak_flops = = 1\n")
    with pytest.raises(ProfileError, match="not valid TOML") as error:
        load_profile(path)
    assert str(path) in str(error.value)


def test_profile_errors_stay_value_and_key_errors(tmp_path):
    """Callers catching what the loader raised before keep working."""
    with pytest.raises(ValueError):
        load_profile(write(tmp_path, "peak_flops = 0\n"))
    with pytest.raises(KeyError):
        load_profile(write(tmp_path, "peak_flops = 1e9\nturbo = true\n"))


def test_name_defaults_to_the_file_stem(tmp_path):
    assert load_profile(write(tmp_path, "peak_flops = 2e9\n")).name == "device"
