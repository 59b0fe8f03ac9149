"""Safe checkpoint loading and architecture detection.

``load_model`` takes a zoo name or a file, reads the weights without ever unpickling code
(``torch.load(weights_only=True)`` or safetensors), undoes the checkpoint wrappers in one place
(:func:`canonicalize`), recognises the architecture and its constructor arguments from the
tensors themselves (so a renamed file still works), and loads strictly.
"""
from __future__ import annotations

import contextlib
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from torch import nn

from .arch_detect import ArchRule, StateDict
from .descriptor import ModelDescriptor, Purpose, describe, purpose_of_architecture, require_purpose

# Wrappers seen in released files, in order of preference (EMA weights are the ones to infer with).
_WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model")

# PyTorch Lightning modules that hold the network as a child (RestoreFormer++'s RestoreFormerModel:
# ``vqvae`` beside the training loss): the network's prefix, and the prefixes of the training-only
# children dropped by name. Anything else in such a file is an error, not silently ignored.
_LIGHTNING_NETWORKS = {"vqvae.": ("loss.",)}


class CheckpointError(ValueError):
    """A weights file cannot be used; the message says which file and why."""


@contextlib.contextmanager
def errors_naming(path: str | Path) -> Iterator[None]:
    """Re-raise any CheckpointError from the block with the file's path in front (once)."""
    try:
        yield
    except CheckpointError as exc:
        message = str(exc)
        raise CheckpointError(message if message.startswith(str(path)) else f"{path}: {message}") from None


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a ``.pth``/``.pt``/``.ckpt`` or ``.safetensors`` file without executing any code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: not a valid safetensors file ({exc})") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses anything but tensors and plain containers: that is the point.
        first_line = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: refused to load: the file contains Python objects other than weights, which "
            f"could run code when unpickled. Only plain state dicts are accepted "
            f"(torch.load weights_only=True). If the file comes from a source you trust, convert it once: "
            f"`facerestore convert --unpickle {path} {path.with_suffix('.safetensors')}` (unpickles it "
            f"this one time, keeps only the network), then use the .safetensors file. "
            f"Detail: {first_line}") from exc
    except Exception as exc:  # garbage bytes can trip the unpickler in arbitrary ways
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else 'truncated or corrupt'})") from exc


def canonicalize(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The bare state dict inside a checkpoint: unwrapped and without DataParallel prefixes."""
    state: Any = checkpoint
    for key in _WRAPPER_KEYS:
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not state:
        raise CheckpointError("the checkpoint holds no state dict")
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError("the checkpoint holds no tensors")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return _lightning_network(tensors)


def _lightning_network(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The network inside a Lightning module's state dict (see ``_LIGHTNING_NETWORKS``), or
    ``tensors`` unchanged when it is not one."""
    for prefix, training_only in _LIGHTNING_NETWORKS.items():
        if not any(k.startswith(prefix) for k in tensors):
            continue
        kept = {k: v for k, v in tensors.items() if not k.startswith(training_only)}
        strays = sorted({k.split(".")[0] + "." for k in kept if not k.startswith(prefix)})
        if strays:
            raise CheckpointError(f"a training checkpoint with the network under '{prefix}' also holds "
                                  f"{', '.join(strays)} entries, which are neither the network nor a known "
                                  f"training-only part ({', '.join(training_only)})")
        return {k[len(prefix):]: v for k, v in kept.items()}
    return tensors


def _rules() -> list[ArchRule]:
    """Every architecture rule, most specific family first. Listed by hand: a rule module that
    fails to import is an error, never a silently missing architecture."""
    from .arch_detect import facexlib, gfpgan, others, restorers

    rules = [*gfpgan.RULES, *others.RULES, *restorers.RULES, *facexlib.RULES]
    names = [rule.name for rule in rules]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise RuntimeError(f"architecture rules defined twice: {sorted(duplicates)}")
    return rules


def _describe(state_dict: StateDict) -> str:
    prefixes: dict[str, int] = {}
    for key in state_dict:
        prefixes[key.split(".")[0]] = prefixes.get(key.split(".")[0], 0) + 1
    top = ", ".join(f"{p} ({n})" for p, n in sorted(prefixes.items(), key=lambda kv: -kv[1])[:8])
    return f"{len(state_dict)} tensors; top-level names: {top}"


def detect_architecture(state_dict: StateDict) -> tuple[ArchRule, dict[str, Any]]:
    """The first rule that recognises the state dict, with the constructor kwargs it inferred."""
    for rule in _rules():
        kwargs = rule.detect_kwargs(state_dict)
        if kwargs is not None:
            return rule, kwargs
    known = ", ".join(rule.name for rule in _rules())
    raise CheckpointError(f"unknown architecture ({_describe(state_dict)}). Known: {known}")


def build_from_state_dict(state_dict: StateDict) -> nn.Module:
    """Build the detected architecture and load the weights with ``strict=True``."""
    rule, kwargs = detect_architecture(state_dict)
    model = rule.module_class(**kwargs)
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"looks like {rule.name}({kwargs}) but does not load strictly: "
                              f"{str(exc).splitlines()[0]}") from exc
    return model.eval()


@dataclass(frozen=True)
class LoadedModel:
    """A ready network with what callers need to know about it."""

    model: nn.Module
    descriptor: ModelDescriptor
    source: str  # the file it came from, or "module" for a module passed in


def load(name_or_path: str | Path | nn.Module, device: str | torch.device = "cpu", *,
         allow_download: bool = True, purpose: Purpose | None = None, role: str = "the model",
         ) -> LoadedModel:
    """Load a network with its descriptor; with ``purpose``, refuse any other kind of network.

    >>> face = load("v1.4", purpose=Purpose.FACE_RESTORATION, role="--model")
    >>> face.descriptor.input_size
    512
    """
    if isinstance(name_or_path, nn.Module):
        model, source = name_or_path.to(device).eval(), "module"
    else:
        model, source = _load_file(name_or_path, device, allow_download, role=role)
    try:
        descriptor = describe(model)
    except TypeError as exc:
        raise CheckpointError(f"{source}: {exc}") from None
    if purpose is not None:
        try:
            require_purpose(descriptor, purpose, role, source)
        except ValueError as exc:
            raise CheckpointError(str(exc)) from None
    return LoadedModel(model, descriptor, source)


def check_model(name_or_path: str | Path, purpose: Purpose, role: str, *, allow_download: bool = True) -> None:
    """Refuse, before anything is built, a model that cannot serve as ``role``: a name that is
    neither a file nor in the zoo, a zoo model not on disk when downloads are off, or a file of
    another kind (its architecture is read from the tensors' names and shapes). Raises
    :class:`CheckpointError` starting with ``role``. A server checks every model it offers this
    way at start-up and loads each only when first asked for."""
    from . import zoo

    path = Path(name_or_path).expanduser()
    if path.is_file():
        try:
            with errors_naming(path):
                rule, _ = detect_architecture(canonicalize(read_checkpoint(path)))
        except CheckpointError as exc:
            raise CheckpointError(f"{role}: {exc}") from None
        architecture = rule.module_class.__name__
    else:
        entry = zoo.find_entry(str(name_or_path))
        if entry is None:
            names = ", ".join(e.name for e in zoo.MODELS)
            raise CheckpointError(f"{role}: '{name_or_path}' is neither a file nor a known model name. "
                                  f"Known names: {names}")
        if not allow_download and zoo.locate(entry) is None:
            raise CheckpointError(f"{role}: " + zoo.missing_message(entry, "downloads are off"))
        architecture = entry.arch
    found = purpose_of_architecture(architecture)
    if found is not purpose:
        from .descriptor import _ROLE_HINTS

        kind = f"{architecture} ({found.value})" if found is not None else architecture
        raise CheckpointError(f"{role}: {name_or_path} is {kind}, but this needs "
                              f"{_ROLE_HINTS.get(purpose, purpose.value)}")


def load_model(name_or_path: str | Path | nn.Module, device: str | torch.device = "cpu", *,
               allow_download: bool = True) -> nn.Module:
    """A ready model (eval mode, on ``device``) from a zoo name, a weights file, or a module.

    >>> load_model("v1.4")                  # zoo name: cached or downloaded on first use
    >>> load_model("my/GFPGANv1.4.pth")     # any file; the architecture is read from the tensors
    """
    if isinstance(name_or_path, nn.Module):
        return name_or_path.to(device).eval()
    return _load_file(name_or_path, device, allow_download)[0]


def _load_file(name_or_path: str | Path, device: str | torch.device, allow_download: bool,
               role: str | None = None) -> tuple[nn.Module, str]:
    from . import zoo

    path = Path(name_or_path).expanduser()
    if not path.is_file():
        entry = zoo.find_entry(str(name_or_path))
        if entry is None:
            names = ", ".join(e.name for e in zoo.MODELS)
            which = f"{role}: " if role else ""  # name the flag, as the other start-up errors do
            raise CheckpointError(f"{which}'{name_or_path}' is neither a file nor a known model name. "
                                  f"Known names: {names}")
        path = zoo.ensure_model_file(entry, allow_download=allow_download)
    else:
        entry = None
    with errors_naming(path):
        model = build_from_state_dict(canonicalize(read_checkpoint(path)))
        # A zoo name promises an architecture: a different file under that name is a mistake.
        if entry is not None and type(model).__name__ != entry.arch:
            raise CheckpointError(f"holds {type(model).__name__}, but '{entry.name}' is {entry.arch}; "
                                  f"replace the file with {entry.url}")
    with contextlib.suppress(TypeError):  # a network without a descriptor has no licence to tell
        zoo.note_license(entry.name if entry is not None else path.name, describe(model).license)
    return model.to(device), str(path)
