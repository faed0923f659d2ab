"""Audio for one demo utterance: a synthesizer (flite / festival / espeak-ng), then sox and numpy.

Pipeline, every step deterministic (sox always runs with ``-D``, no dither):

1. the voice reads the reference text at its own sample rate;
2. one sox pass makes the *speaker*: resample to 16 kHz mono, ``pitch`` (F0 and spectral envelope
   move together: sox shifts the whole spectrum), ``tempo -s`` (speaking rate, pitch kept), a
   formant-like emphasis (three peaking ``equalizer`` bands at 500, 1500 and 2500 Hz times
   ``formant_shift``, +4 dB, q 2: it pulls the spectral envelope's peaks up or down; sox has no true
   vocal-tract warp that keeps F0, because ``speed`` and ``pitch`` both scale every frequency), the
   ``reverb`` condition when chosen, then ``gain -n gain_db`` (peak level, the speaker's loudness);
3. the *condition*: ``telephone`` is a G.711 round trip (8 kHz mu-law with ``sinc 300-3400``, back to
   16 kHz); ``noise`` adds white / pink / brown noise made by numpy from ``noise_seed`` at ``snr_db``
   relative to the active speech level; ``clean`` and ``reverb`` pass through.

The result is a 16 kHz mono 16-bit PCM wav, written atomically.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

from fairspeech.utils.io import atomic_path

SAMPLE_RATE = 16000
FORMANT_CENTERS_HZ = (500.0, 1500.0, 2500.0)
FORMANT_BOOST_DB = 4.0
FORMANT_Q = 2.0
TELEPHONE_BAND = "300-3400"

BINARIES = {"flite": ("flite",), "festival": ("text2wave", "festival"), "espeak-ng": ("espeak-ng",)}


class SynthesisError(RuntimeError):
    """A synthesizer, voice or sox step is missing or failed; the message names which."""


# ----------------------------------------------------------------------------------------------------
# Checking the parts are there (once per build, before any work)


def require_tools(voices) -> None:
    """Fail with a message naming the missing binary or voice; ``voices`` are speakers.Voice objects."""
    families = sorted({v.family for v in voices})
    for binary in ("sox",) + tuple(b for f in families for b in BINARIES[f]):
        if shutil.which(binary) is None:
            raise SynthesisError(
                f"'{binary}' is not installed; the demo corpus needs it "
                "(Debian: apt-get install espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k "
                "festvox-us-slt-hts sox)"
            )
    for voice in voices:
        if not voice_available(voice.family, voice.name):
            raise SynthesisError(f"{voice.family} voice '{voice.name}' is not installed")


@functools.lru_cache(maxsize=None)
def voice_available(family: str, name: str) -> bool:
    if family == "flite":
        listed = _run(["flite", "-lv"]).stdout
        return name in listed.replace(":", " ").split()
    if family == "festival":
        # text2wave exits 0 even for an unknown voice; festival reports "SIOD ERROR" instead.
        result = subprocess.run(["festival", "--batch", f"(voice_{name})"], capture_output=True, text=True)
        return result.returncode == 0 and "SIOD ERROR" not in result.stdout + result.stderr
    if family == "espeak-ng":
        # An unknown variant falls back to the default voice silently, so check the files.
        language, _, variant = name.partition("+")
        languages = {line.split()[1] for line in _run(["espeak-ng", "--voices"]).stdout.splitlines()[1:]}
        return language in languages and (not variant or (_espeak_data_dir() / "voices" / "!v" / variant).exists())
    raise ValueError(f"unknown voice family {family!r}")


@functools.lru_cache(maxsize=1)
def _espeak_data_dir() -> Path:
    # "espeak-ng text-to-speech: 1.51  Data at: /usr/lib/x86_64-linux-gnu/espeak-ng-data"
    version = _run(["espeak-ng", "--version"]).stdout
    return Path(version.split("Data at:")[-1].strip())


def tool_versions() -> dict[str, str]:
    """Versions recorded with the build, since audio is bit-for-bit only for the same tools."""
    def version_line(cmd):
        """The output line that names the version (flite prints a copyright line first)."""
        try:
            result = subprocess.run(cmd, capture_output=True, text=True)
        except OSError:
            return "missing"
        lines = [line.strip() for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        return next((line for line in lines if "version" in line.lower() or " v" in line), lines[0] if lines else "")
    return {
        "flite": version_line(["flite", "--version"]),
        "festival": version_line(["festival", "--version"]),
        "espeak-ng": version_line(["espeak-ng", "--version"]),
        "sox": version_line(["sox", "--version"]),
    }


# ----------------------------------------------------------------------------------------------------
# Synthesis


def synthesize(family: str, voice: str, text: str, out_wav: Path) -> None:
    """The voice reads ``text`` into ``out_wav`` (its own sample rate)."""
    if family == "flite":
        _run(["flite", "-voice", voice, "-t", text, "-o", str(out_wav)])
    elif family == "festival":
        text_file = out_wav.with_suffix(".txt")
        text_file.write_text(text + "\n", encoding="utf-8")
        result = _run(["text2wave", "-eval", f"(voice_{voice})", str(text_file), "-o", str(out_wav)])
        if "SIOD ERROR" in result.stderr + result.stdout:
            raise SynthesisError(f"festival voice '{voice}' failed: {result.stderr.strip()[:300]}")
    elif family == "espeak-ng":
        _run(["espeak-ng", "-v", voice, "-w", str(out_wav), text])
    else:
        raise ValueError(f"unknown voice family {family!r}")
    if not out_wav.exists() or out_wav.stat().st_size <= 44:
        raise SynthesisError(f"{family} voice '{voice}' wrote no audio for {text!r}")


def speaker_effects(pitch_cents: float, tempo: float, formant_shift: float) -> list[str]:
    """sox effects that turn a voice into one speaker (loudness is applied last, see render)."""
    effects = ["rate", "-h", str(SAMPLE_RATE), "pitch", f"{pitch_cents:.1f}", "tempo", "-s", f"{tempo:.3f}"]
    for center in FORMANT_CENTERS_HZ:
        effects += ["equalizer", f"{center * formant_shift:.1f}", f"{FORMANT_Q}q", f"{FORMANT_BOOST_DB:+.1f}"]
    return effects


def reverb_effects(reverberance: float, room_scale: float) -> list[str]:
    # reverb's arguments: reverberance% HF-damping% room-scale% stereo-depth% pre-delay(ms) wet-gain(dB)
    return ["reverb", f"{reverberance:.1f}", "50", f"{room_scale:.1f}", "100", "10", "0"]


def render(spec: dict, out_path: Path) -> float:
    """Render one utterance from its manifest row (``spec``) into ``out_path``; returns duration (s).

    ``spec`` needs: voice_family, voice, reference, pitch_cents, tempo, formant_shift, gain_db,
    condition, snr_db, noise_color, noise_seed, reverberance, room_scale.
    """
    out_path = Path(out_path)
    with tempfile.TemporaryDirectory(prefix="fairspeech-demo-") as tmp:
        tmp = Path(tmp)
        raw, shaped = tmp / "raw.wav", tmp / "shaped.wav"
        synthesize(spec["voice_family"], spec["voice"], spec["reference"], raw)
        effects = speaker_effects(spec["pitch_cents"], spec["tempo"], spec["formant_shift"])
        if spec["condition"] == "reverb":
            effects += reverb_effects(spec["reverberance"], spec["room_scale"])
        effects += ["gain", "-n", f"{spec['gain_db']:.1f}"]
        _sox(raw, shaped, effects)
        if spec["condition"] == "telephone":
            shaped = _telephone(shaped, tmp)
        samples = read_pcm16(shaped)
        if spec["condition"] == "noise":
            noise = colored_noise(len(samples), spec["noise_color"], int(spec["noise_seed"]))
            samples = mix_at_snr(samples, noise, float(spec["snr_db"]))
        write_pcm16(out_path, samples)
    return len(samples) / SAMPLE_RATE


def _telephone(path: Path, tmp: Path) -> Path:
    narrow, wide = tmp / "narrow.wav", tmp / "wide.wav"
    _run(["sox", "-D", "-V1", str(path), "-r", "8000", "-e", "u-law", "-b", "8", str(narrow),
          "sinc", TELEPHONE_BAND])
    _run(["sox", "-D", "-V1", str(narrow), "-r", str(SAMPLE_RATE), "-e", "signed-integer", "-b", "16",
          str(wide)])
    return wide


def _sox(src: Path, dst: Path, effects: list[str]) -> None:
    _run(["sox", "-D", "-V1", str(src), "-c", "1", "-b", "16", "-e", "signed-integer", str(dst)] + effects)


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise SynthesisError(f"'{cmd[0]}' is not installed") from exc
    if result.returncode != 0:
        raise SynthesisError(f"{' '.join(cmd[:4])}... failed ({result.returncode}): {result.stderr.strip()[:300]}")
    return result


# ----------------------------------------------------------------------------------------------------
# Noise and wav I/O (numpy; no extra audio library needed)


def colored_noise(n: int, color: str, seed: int) -> np.ndarray:
    """Unit-RMS noise: white (flat), pink (power 1/f) or brown (power 1/f^2), from its own Generator."""
    white = np.random.default_rng(seed).standard_normal(n)
    if color != "white":
        exponent = {"pink": 0.5, "brown": 1.0}[color]
        spectrum = np.fft.rfft(white)
        freqs = np.fft.rfftfreq(n, d=1.0 / SAMPLE_RATE)
        # Flatten below 20 Hz so the shaping does not blow up near DC.
        spectrum /= np.maximum(freqs, 20.0) ** exponent
        white = np.fft.irfft(spectrum, n)
    return white / np.sqrt(np.mean(white**2))


def active_rms(samples: np.ndarray, frame: int = 320, floor_db: float = 30.0) -> float:
    """RMS over the 20 ms frames within ``floor_db`` of the loudest one (speech, not the silences)."""
    x = samples.astype(np.float64)
    usable = len(x) // frame * frame
    if usable == 0:
        return float(np.sqrt(np.mean(x**2)))
    power = np.mean(x[:usable].reshape(-1, frame) ** 2, axis=1)
    active = power[power >= power.max() * 10 ** (-floor_db / 10)]
    return float(np.sqrt(active.mean()))


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``speech`` (int16) plus ``noise`` scaled to ``snr_db`` below the active speech level; int16 out."""
    scale = active_rms(speech) / 10 ** (snr_db / 20)
    mixed = speech.astype(np.float64) + noise * scale
    return np.clip(np.round(mixed), -32768, 32767).astype(np.int16)


def read_pcm16(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise SynthesisError(f"{path}: expected 16-bit mono, got {w.getsampwidth() * 8}-bit x {w.getnchannels()}")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").copy()


def write_pcm16(path: Path, samples: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(SAMPLE_RATE)
            w.writeframes(np.asarray(samples, dtype="<i2").tobytes())
    os.chmod(path, 0o644)
