"""Read checkpoints safely and reduce them to a flat ``{name: tensor}`` state dict.

Official SR repositories wrap their weights in many ways (BasicSR ``params_ema``/``params``,
``state_dict``, ``model``, ``net``/``netG``; ``module.`` prefixes from DataParallel). This module
undoes the wrapping so architecture detection only ever sees parameter names and shapes.
Pickles are opened with ``torch.load(weights_only=True)``: a file that needs arbitrary code to
unpickle is refused, never executed.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import tempfile
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import CheckpointError, OutputExistsError, ScalesError

StateDict = dict[str, torch.Tensor]

# Wrapper keys in order of preference: EMA weights are what the official test scripts evaluate.
WRAPPER_KEYS: tuple[str, ...] = ("params_ema", "params", "state_dict", "model", "net", "netG", "generator")
# Prefixes added by DataParallel/DDP, torch.compile and some training frameworks.
STRIP_PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.", "model.", "net.", "netG.", "generator.")

_PICKLE_SUFFIXES = {".pth", ".pt", ".ckpt", ".bin", ".pkl"}
_SAFETENSORS_SUFFIXES = {".safetensors"}


@dataclass(frozen=True)
class Checkpoint:
    """A flat state dict plus what the file said about itself."""

    path: Path
    state_dict: StateDict
    sha256: str
    metadata: Mapping[str, str] = field(default_factory=dict)  # safetensors header metadata


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks (checkpoints are matched against published digests)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


EXPORTED_SUFFIXES = (".onnx", ".xml")
"""Files ``scales export`` writes: they run (upscale, report, bench) but hold no trainable network."""


def end_product(p: Path) -> CheckpointError:
    """The one-line refusal of an exported file where a trainable network is needed (binarize, finetune, export).

    Names the file it was exported from when its ``scales.source`` metadata says (any file: read failures
    just leave it out, the refusal stands).
    """
    source = ""
    try:
        from .export.runtime import exported_metadata

        source = exported_metadata(p).get("source", "")
    except Exception:  # noqa: BLE001 - a foreign or damaged file: the refusal needs no metadata
        source = ""
    given = f"the file it was exported from ({source})" if source else "the student .safetensors (or FP checkpoint) it was exported from"
    return CheckpointError(
        f"{p}: is an exported model, an end product (it runs in scales upscale, report and bench; it cannot be "
        f"binarized, fine-tuned or exported again); give {given}"
    )


def read_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Load ``path`` (.pth/.pt/.safetensors) into a flat float state dict on the CPU.

    Raises :class:`CheckpointError` with a one-line message for anything that is not a readable
    state dict of tensors.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such file (expected a .pth/.pt/.safetensors checkpoint)")
    if p.is_dir():
        raise CheckpointError(f"{p}: is a directory (expected a .pth/.pt/.safetensors checkpoint file)")
    if p.stat().st_size == 0:
        raise CheckpointError(f"{p}: file is empty (expected a .pth/.pt/.safetensors checkpoint)")
    if p.suffix.lower() in EXPORTED_SUFFIXES:
        raise end_product(p)
    metadata: dict[str, str] = {}
    if _looks_like_safetensors(p):
        raw, metadata = _read_safetensors(p)
    else:
        raw = _read_pickle(p)
    state = unwrap_state_dict(raw, p)
    check_finite(state, p)
    return Checkpoint(path=p, state_dict=state, sha256=sha256_of(p), metadata=metadata)


def check_finite(state: StateDict, p: Path) -> None:
    """Refuse NaN/inf weights, naming the first bad tensor: they would run and write garbage images."""
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(
                f"{p}: tensor {key} holds {bad} non-finite value{'s' if bad > 1 else ''} (NaN/inf); expected finite weights"
            )


def _looks_like_safetensors(p: Path) -> bool:
    if p.suffix.lower() in _SAFETENSORS_SUFFIXES:
        return True
    if p.suffix.lower() in _PICKLE_SUFFIXES:
        return False
    # Unknown suffix: a safetensors file starts with an 8-byte little-endian header length then '{'.
    with open(p, "rb") as fh:
        head = fh.read(9)
    return len(head) == 9 and head[8:9] == b"{"


def _read_safetensors(p: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(p), framework="pt", device="cpu") as fh:
            meta = dict(fh.metadata() or {})
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{p}: not a readable safetensors file ({_first_line(exc)})") from None
    return tensors, meta


def _read_pickle(p: Path) -> object:
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol ..." around a refusal: ours is the one line
            warnings.simplefilter("ignore")
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        unsafe = _UNSAFE_GLOBAL.search(text)
        if unsafe:  # the restricted unpickler met a class/function reference and stopped before calling it
            raise CheckpointError(
                f"{p}: refused: unpickling it would run code ({unsafe.group(1)}); "
                "expected a plain state dict of tensors (re-save it with torch.save(model.state_dict()))"
            ) from None
        reason = _WEIGHTS_UNPICKLER.search(text)
        why = reason.group(1).strip() if reason and reason.group(1).strip() else _first_line(exc)
        raise CheckpointError(f"{p}: not a PyTorch checkpoint ({_sniff(p) or why})") from None
    except Exception as exc:  # noqa: BLE001 - torch.load on arbitrary bytes raises anything (KeyError, struct.error ...)
        hint = "truncated or corrupt" if _is_truncation(exc) else "not a PyTorch checkpoint"
        why = _sniff(p) or f"{type(exc).__name__}: {_first_line(exc)}"
        raise CheckpointError(f"{p}: {hint} ({why}); expected a .pth/.pt/.safetensors state dict") from None


# torch's restricted unpickler names what it refused, in one of two phrasings:
# "Unsupported global: GLOBAL builtins.open was not an allowed global ..." (not allow-listed) and
# "Trying to load unsupported GLOBAL posix.system whose module posix is blocked." (os/sys/...).
_UNSAFE_GLOBAL = re.compile(r"[Uu]nsupported (?:global: )?GLOBAL ([\w.]*\w)")
_WEIGHTS_UNPICKLER = re.compile(r"WeightsUnpickler error:\s*(.*?)(?:\n\n|$)", re.S)
# File signatures of things people mistake for checkpoints.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "a gzip archive"), (b"%PDF", "a PDF document"), (b"\x89HDF", "an HDF5/Keras file"),
    (b"\x08", "possibly an ONNX/protobuf file"),
)


def _sniff(p: Path) -> str:
    """What the file's first bytes say it is, if it is a well-known non-checkpoint format."""
    with open(p, "rb") as fh:
        head = fh.read(8)
    return next((f"the file is {name}" for magic, name in _SIGNATURES if head.startswith(magic)), "")


def _is_truncation(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, EOFError) or any(
        s in text for s in ("central directory", "unexpected eof", "ran out of input", "truncated", "failed finding")
    )


def _first_line(exc: BaseException) -> str:
    """The first sentence of an exception's message (library messages go on with advice we do not want)."""
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else exc.__class__.__name__
    return first.split(". ", 1)[0].rstrip(".")[:200]


def unwrap_state_dict(raw: object, p: Path) -> StateDict:
    """Descend through known wrapper keys, then strip wrapper prefixes shared by every key."""
    node = raw
    for _ in range(4):  # wrappers nest at most a few levels (e.g. {'model': {'state_dict': ...}})
        if not isinstance(node, Mapping):
            break
        if node and all(isinstance(v, torch.Tensor) for v in node.values()):
            break
        for key in WRAPPER_KEYS:
            if isinstance(node.get(key), Mapping) and node[key]:
                node = node[key]
                break
        else:
            break
    if not isinstance(node, Mapping) or not node:
        raise CheckpointError(f"{p}: holds no state dict (expected a mapping of parameter names to tensors)")
    tensors = {str(k): v for k, v in node.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        kinds = ", ".join(sorted({type(v).__name__ for v in node.values()}))[:80]
        raise CheckpointError(f"{p}: holds no tensors (found {kinds}); expected a state dict of tensors")
    return strip_prefixes(tensors)


def strip_prefixes(state: StateDict) -> StateDict:
    """Remove wrapper prefixes that every key shares (``module.``, ``_orig_mod.`` ...)."""
    changed = True
    while changed:
        changed = False
        for prefix in STRIP_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                changed = True
    return {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[Path], object], *, force: bool = False, suffix: str = ""
) -> Path:
    """Write via ``write(tmp_path)`` to a temp file in the target folder, then rename over ``path``.

    Refuses to replace an existing file unless ``force``: a user's file is never overwritten silently.
    """
    target = _refuse_target(Path(path), force)  # its own mkstemp is the write test: no probe file here
    ensure_dir(target.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or target.suffix, dir=target.parent)
    except OSError as exc:
        raise _unwritable(target, exc) from None
    os.close(fd)
    try:
        write(Path(tmp))
        # mkstemp makes 0600, and writers that recreate the file (safetensors' save_file) keep that:
        # give the finished file the usual permissions, after the write
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, target)
    except OSError as exc:  # disk full, a folder that went read-only: one line naming the file
        Path(tmp).unlink(missing_ok=True)
        raise _unwritable(target, exc) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _unwritable(target: Path, exc: OSError) -> ScalesError:
    return ScalesError(f"{target}: cannot be written ({exc.strerror or exc})")


def refuse_existing(path: str | os.PathLike[str], *, force: bool = False) -> Path:
    """The checks :func:`atomic_write` makes, for commands to make before minutes of work too."""
    target = _refuse_target(Path(path), force)
    check_writable(target.parent, target)
    return target


def _refuse_target(target: Path, force: bool) -> Path:
    if target.is_dir():
        raise OutputExistsError(f"{target}: is a directory (expected a file path to write)")
    if target.exists() and not force:
        raise OutputExistsError(f"{target}: already exists (pass --force to overwrite)")
    return target


def check_writable(folder: str | os.PathLike[str], target: Path | None = None) -> Path:
    """Fail now, in one line, if files cannot be created in ``folder`` (or the nearest folder that exists).

    Permission bits do not tell (root may write anywhere but ``/proc``, a read-only mount refuses
    everyone), so a temp file is made and removed: the only test that asks the file system itself.
    """
    p = Path(folder)
    base = next((q for q in (p, *p.parents) if q.exists()), None)
    if base is None or not base.is_dir():
        return p  # ensure_dir reports a file in the way when the folder is created
    try:
        fd, probe = tempfile.mkstemp(prefix=".scales-write-test.", dir=base)
    except OSError as exc:
        what = f"{target}: cannot be written" if target is not None else f"{p}: files cannot be written there"
        raise ScalesError(f"{what} ({base}: {exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)
    return p


def ensure_dir(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` (and parents) or raise a one-line :class:`ScalesError` saying why it cannot be."""
    p = Path(folder)
    blocker = next((q for q in (p, *p.parents) if q.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise ScalesError(f"{blocker}: is a file, not a folder (expected an output folder for {p})")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ScalesError(f"{p}: cannot create the output folder ({exc.strerror or exc})") from None
    return p


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
