"""The diff file: a safetensors file of diff tensors plus a JSON header, and applying it safely.

Tensors, per diffed weight ``name`` of the model:

* sparse: ``name.indices`` (int32, flat positions, strictly increasing) and ``name.values``;
* hashed: ``name.buckets`` (the shared values; positions map to buckets by a fixed hash, see
  :mod:`fairspeech.updates.hashed`).

The header (safetensors metadata key ``fairspeech_diff``, JSON) holds the format version, the diff
type, its density, the SHA-256 of the exact base weights it applies to, the SHA-256 of the weights
it produces, and the SHA-256 of its own payload. :func:`read_diff` checks all of it and
:func:`apply_diff` computes the whole updated state before anything is replaced, so a diff for
another base, a truncated file or a malformed header raises :class:`DiffError` and the deployed
weights stay as they were. No pickles anywhere: safetensors and JSON only.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from fairspeech.utils import io

FORMAT = "fairspeech-diff"
FORMAT_VERSION = 1
HEADER_KEY = "fairspeech_diff"
DIFF_TYPES = ("sparse", "hashed")
VALUE_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
_REQUIRED = {"format": str, "format_version": int, "diff_type": str, "base_sha256": str, "updated_sha256": str,
             "payload_sha256": str, "density": (int, float), "parameters": int, "entries": int, "value_dtype": str, "tensors": dict}


class DiffError(ValueError):
    """A diff that cannot be applied: unreadable, malformed, or made for other base weights."""


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def weights_sha256(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and raw bytes, in name order: the identity of a set of weights."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name]
        digest.update(f"{name}\0{str(tensor.dtype)}\0{tuple(tensor.shape)}\0".encode())
        digest.update(_tensor_bytes(tensor))
    return digest.hexdigest()


@dataclass
class Diff:
    """A diff in memory: ``header`` (see the module docstring) and its tensors."""

    header: dict
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def diff_type(self) -> str:
        return self.header["diff_type"]

    def tensor_names(self) -> list[str]:
        return sorted(self.header["tensors"])


def make_header(diff_type: str, tensors: dict[str, torch.Tensor], shapes: dict[str, list[int]], base_sha256: str,
                updated_sha256: str, value_dtype: str, extra: dict | None = None) -> dict:
    """The header for ``tensors`` (already in file layout); ``shapes`` are the diffed weights' shapes."""
    if diff_type not in DIFF_TYPES:
        raise ValueError(f"diff_type must be one of {DIFF_TYPES}, got {diff_type!r}")
    suffix = ".indices" if diff_type == "sparse" else ".buckets"
    entries = {name: int(tensors[name + suffix].numel()) for name in shapes}
    parameters = sum(int(torch.Size(shape).numel()) for shape in shapes.values())
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "diff_type": diff_type,
        "base_sha256": base_sha256, "updated_sha256": updated_sha256, "payload_sha256": weights_sha256(tensors),
        "density": sum(entries.values()) / max(1, parameters), "parameters": parameters, "entries": sum(entries.values()),
        "value_dtype": value_dtype,
        "tensors": {name: {"shape": list(shape), "entries": entries[name]} for name, shape in sorted(shapes.items())},
        **(extra or {}),
    }


def write_diff(path: str | Path, diff: Diff) -> Path:
    """Write ``diff`` atomically (a reader never sees a partial file)."""
    path = Path(path)
    with io.atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in diff.tensors.items()}, str(tmp), metadata={HEADER_KEY: json.dumps(diff.header, sort_keys=True)})
    return path


def _check_header(path, header: dict) -> None:
    for key, kind in _REQUIRED.items():
        if key not in header:
            raise DiffError(f"{path}: header has no {key!r} field")
        if not isinstance(header[key], kind) or isinstance(header[key], bool):
            raise DiffError(f"{path}: header field {key!r} has the wrong type ({type(header[key]).__name__})")
    if header["format"] != FORMAT:
        raise DiffError(f"{path}: header field 'format' is {header['format']!r}, not {FORMAT!r}")
    if header["format_version"] != FORMAT_VERSION:
        raise DiffError(f"{path}: format_version {header['format_version']} is not supported (this reader: {FORMAT_VERSION})")
    if header["diff_type"] not in DIFF_TYPES:
        raise DiffError(f"{path}: header field 'diff_type' is {header['diff_type']!r}, expected one of {DIFF_TYPES}")
    if header["value_dtype"] not in VALUE_DTYPES:
        raise DiffError(f"{path}: header field 'value_dtype' is {header['value_dtype']!r}, expected one of {sorted(VALUE_DTYPES)}")
    if header["diff_type"] == "hashed" and not isinstance(header.get("hash_seed"), int):
        raise DiffError(f"{path}: a hashed diff's header needs an integer 'hash_seed'")
    for name, spec in header["tensors"].items():
        if not isinstance(spec, dict) or not isinstance(spec.get("shape"), list) or not isinstance(spec.get("entries"), int):
            raise DiffError(f"{path}: header field 'tensors.{name}' needs 'shape' (list) and 'entries' (int)")


def _check_tensors(path, header: dict, tensors: dict[str, torch.Tensor]) -> None:
    sparse = header["diff_type"] == "sparse"
    suffixes = (".indices", ".values") if sparse else (".buckets",)
    expected = {name + s for name in header["tensors"] for s in suffixes}
    if set(tensors) != expected:
        extra, missing = sorted(set(tensors) - expected), sorted(expected - set(tensors))
        raise DiffError(f"{path}: tensors do not match the header (missing {missing[:3]}, unexpected {extra[:3]})")
    value_dtype = VALUE_DTYPES[header["value_dtype"]]
    for name, spec in header["tensors"].items():
        numel = int(torch.Size(spec["shape"]).numel())
        values = tensors[name + (".values" if sparse else ".buckets")]
        if values.dtype != value_dtype or values.dim() != 1 or values.numel() != spec["entries"]:
            raise DiffError(f"{path}: tensor {name!r}: values are {values.dtype} x {tuple(values.shape)}, header says {value_dtype} x ({spec['entries']},)")
        if not torch.isfinite(values.float()).all():
            raise DiffError(f"{path}: tensor {name!r} has non-finite values")
        if sparse:
            indices = tensors[name + ".indices"]
            if indices.dtype != torch.int32 or indices.shape != values.shape:
                raise DiffError(f"{path}: tensor {name!r}: indices must be int32 with one per value")
            if len(indices) and (int(indices[0]) < 0 or int(indices[-1]) >= numel or not bool((indices[1:] > indices[:-1]).all())):
                raise DiffError(f"{path}: tensor {name!r}: indices must be strictly increasing within [0, {numel})")
        elif not 1 <= values.numel() <= numel:
            raise DiffError(f"{path}: tensor {name!r}: {values.numel()} buckets for {numel} weights")
    if weights_sha256(tensors) != header["payload_sha256"]:
        raise DiffError(f"{path}: payload SHA-256 does not match the header (corrupted file)")


def read_diff(path: str | Path) -> Diff:
    """Read and fully validate a diff file; any problem is a :class:`DiffError` naming the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise DiffError(f"{path}: no such diff file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as error:  # safetensors raises its own error types for truncated or garbled files
        raise DiffError(f"{path}: not a readable safetensors diff (truncated or corrupted?): {error}") from error
    if HEADER_KEY not in metadata:
        raise DiffError(f"{path}: no {HEADER_KEY!r} header in the safetensors metadata")
    try:
        header = json.loads(metadata[HEADER_KEY])
    except json.JSONDecodeError as error:
        raise DiffError(f"{path}: malformed header (not JSON): {error}") from error
    if not isinstance(header, dict):
        raise DiffError(f"{path}: malformed header (not a JSON object)")
    _check_header(path, header)
    _check_tensors(path, header, tensors)
    return Diff(header, tensors)


def tensor_delta(diff: Diff, name: str) -> torch.Tensor:
    """The dense float32 delta one diffed weight gets (what training folded in, bit for bit)."""
    from fairspeech.updates.hashed import hashed_delta
    from fairspeech.updates.sparse import sparse_delta

    shape = diff.header["tensors"][name]["shape"]
    if diff.diff_type == "sparse":
        return sparse_delta(diff.tensors[name + ".indices"], diff.tensors[name + ".values"], shape)
    return hashed_delta(diff.tensors[name + ".buckets"], shape, name, diff.header["hash_seed"])


def fold(base: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Base plus delta: the one definition both training (finalize) and apply use, so they agree exactly."""
    return (base.float() + delta).to(base.dtype)


def apply_diff(state: dict[str, torch.Tensor], diff: Diff, source: str = "diff") -> dict[str, torch.Tensor]:
    """The updated weights as a new dict; ``state`` is not modified. Raises :class:`DiffError` when
    ``state`` is not the diff's base or the result is not the weights the diff was made to produce."""
    found = weights_sha256(state)
    if found != diff.header["base_sha256"]:
        raise DiffError(f"{source}: made for base weights {diff.header['base_sha256'][:16]}..., "
                        f"but these weights are {found[:16]}...; nothing was changed")
    updated = dict(state)
    for name in diff.tensor_names():
        shape = diff.header["tensors"][name]["shape"]
        if name not in state or list(state[name].shape) != shape:
            raise DiffError(f"{source}: weight {name!r} of shape {shape} is not in the base model; nothing was changed")
        updated[name] = fold(state[name], tensor_delta(diff, name))
    for alias, primary in diff.header.get("tied", {}).items():  # weights tied to a diffed one change with it
        if alias not in state:
            raise DiffError(f"{source}: tied weight {alias!r} is not in the base model; nothing was changed")
        updated[alias] = updated[primary]
    if weights_sha256(updated) != diff.header["updated_sha256"]:
        raise DiffError(f"{source}: applying it did not give the weights it was made for; nothing was changed")
    return updated


def apply_diff_file(base_path: str | Path, diff_path: str | Path, out_path: str | Path) -> dict:
    """Apply a diff file to a model file (``model.safetensors`` + ``.json`` sidecar) and write the
    updated model atomically to ``out_path`` (which may be ``base_path`` itself: an error leaves it as it was)."""
    from fairspeech.training import checkpoint as ckpt

    diff = read_diff(diff_path)
    try:
        weights, meta = ckpt.load_weights(base_path)
    except Exception as error:
        raise DiffError(f"{base_path}: cannot read the base model: {error}") from error
    updated = apply_diff(weights, diff, str(diff_path))
    out_path = Path(out_path)
    meta = dict(meta, diff={k: diff.header[k] for k in ("diff_type", "density", "base_sha256", "updated_sha256")})
    with io.atomic_path(out_path) as tmp:
        save_file({k: v.contiguous() for k, v in updated.items()}, str(tmp))
    io.write_json(out_path.with_suffix(".json"), meta)
    return diff.header


def compressed_sizes(path: str | Path) -> dict:
    """Bytes of a file on disk and compressed with gzip -9, xz, and zstd -19 (zstd when the tool is installed)."""
    data = Path(path).read_bytes()
    sizes = {"disk": len(data), "gzip": len(gzip.compress(data, 9, mtime=0)), "xz": len(lzma.compress(data, preset=6))}
    try:
        import zstandard

        sizes["zstd"] = len(zstandard.ZstdCompressor(level=19).compress(data))
    except ImportError:
        if shutil.which("zstd"):
            sizes["zstd"] = len(subprocess.run(["zstd", "-19", "-q", "-c"], input=data, capture_output=True, check=True).stdout)
    return sizes
