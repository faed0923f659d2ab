"""The public API at the package root: every exported name resolves, and ``import fairspeech`` stays cheap."""

import subprocess
import sys

import fairspeech


def test_every_exported_name_resolves():
    assert fairspeech.__all__ == sorted(set(fairspeech.__all__))
    for name in fairspeech.__all__:
        assert getattr(fairspeech, name) is not None, name
        assert name in dir(fairspeech)
    from fairspeech.audit import run_audit
    from fairspeech.config import load
    from fairspeech.errors import ConfigError, InputError
    from fairspeech.verification.train import train

    assert (fairspeech.run_audit, fairspeech.load, fairspeech.train_verifier) == (run_audit, load, train)
    assert issubclass(fairspeech.ConfigError, fairspeech.InputError) and (fairspeech.InputError, fairspeech.ConfigError) == (InputError, ConfigError)


def test_unknown_names_are_attribute_errors():
    try:
        fairspeech.no_such_name  # noqa: B018
    except AttributeError as error:
        assert "no_such_name" in str(error)
    else:
        raise AssertionError("no AttributeError")


def test_import_fairspeech_does_not_import_torch():
    code = "import fairspeech, sys; assert 'torch' not in sys.modules; fairspeech.read_manifest; fairspeech.CohortFrame; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
