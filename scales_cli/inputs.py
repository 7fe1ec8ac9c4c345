"""The one input front door: which files are images, which device runs, how a network upscales.

Every command reads inputs through here, so a folder, a ``--device`` or a small image is accepted or
refused the same way by ``report``, ``upscale``, ``bench``, ``binarize --calibrate``, ``finetune``'s
``--data`` and validation, and ``export --check``:

* **images** — :data:`IMAGE_SUFFIXES` is the one list of suffixes (every format the decoder reads);
  :func:`find_images` lists a folder (``recursive`` for training folders) and refuses a missing or
  empty one in one line naming the option.
* **devices** — one grammar, ``auto | cpu | cuda[:N]`` (:func:`parse_device`); ``auto`` is CUDA when
  the machine has it, else the CPU; a bare ``cuda`` under torchrun is the process's local device.
* **upscaling** — :class:`Upscaler` runs a network the way every scorer, writer and timer must:
  input scaled to ``[0, input_range]``, sides below ``min_size`` edge-padded and the output cropped
  back, eval mode and the chosen device for the call only (the caller's model keeps its own
  train/eval flags and device), no autograd.

Torch is imported lazily: listing images needs none.

>>> from scales_cli.inputs import Upscaler, find_images          # doctest: +SKIP
>>> files = find_images("Set5/HR", "--data")                     # doctest: +SKIP
>>> sr = Upscaler.of(load("RLFN_x4.pth"))(lr_uint8)              # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import DataError, ScalesError

if TYPE_CHECKING:
    import torch
    from PIL import Image
    from torch import nn

    from .archs.descriptor import SRDescriptor
    from .imaging import LoadedImage
    from .tiling import TileCallback, TilePlan

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")
"""Every suffix the decoder (:mod:`scales_cli.decode`, Pillow) is asked to read, lower case."""


# -- images -----------------------------------------------------------------------------------------


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def list_images(folder: str | Path, *, recursive: bool = False) -> list[Path]:
    """The image files of ``folder`` (or of its whole tree), sorted; no check that there are any."""
    root = Path(folder)
    return sorted(p for p in (root.rglob("*") if recursive else root.iterdir()) if is_image_file(p))


def find_images(folder: str | Path, option: str, *, recursive: bool = False) -> list[Path]:
    """:func:`list_images`, refusing a missing or image-less folder in one line that names ``option``."""
    root = Path(folder)
    expected = f"{', '.join(IMAGE_SUFFIXES)} images"
    if not root.is_dir():
        raise DataError(f"{option} {root}: not a folder (expected a folder of {expected})")
    files = list_images(root, recursive=recursive)
    if not files:
        where = " (searched recursively)" if recursive else ""
        raise DataError(f"{option} {root}: holds no images (expected {expected}){where}")
    return files


# -- devices ----------------------------------------------------------------------------------------

DEVICE_GRAMMAR = "cpu or cuda[:N], or auto (cuda when present, else cpu)"


def check_device_name(name: str, option: str = "--device") -> str:
    """The grammar alone (``auto``, ``cpu`` or ``cuda[:N]``), for settings checked before the machine is known."""
    kind, sep, index = name.partition(":")
    if kind not in ("auto", "cpu", "cuda") or (sep and (kind != "cuda" or not index.isdigit())):
        raise ScalesError(f"{option} {name}: expected {DEVICE_GRAMMAR}")
    return name


def parse_device(name: str, option: str = "--device") -> str:
    """Check a device name before any work: ``auto``, ``cpu`` or ``cuda[:N]`` (that CUDA device exists)."""
    import torch

    kind, _, index = check_device_name(name, option).partition(":")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ScalesError(f"{option} {name}: CUDA is not available on this machine (use {option} cpu or auto)")
        count = torch.cuda.device_count()
        if index and int(index) >= count:
            raise ScalesError(f"{option} {name}: this machine has {count} CUDA device(s) (expected cuda:0..cuda:{count - 1})")
    return name


def resolve_device(name: str, *, local_rank: int = 0, option: str = "--device") -> torch.device:
    """:func:`parse_device`, then the device itself.

    ``auto`` and a bare ``cuda`` take CUDA device ``local_rank mod count`` (one process per device under
    torchrun); ``cuda:N`` is device ``N``; ``auto`` without CUDA is the CPU.
    """
    import torch

    name = parse_device(name, option)
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if ":" in name:
        return torch.device(name)
    return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))


# -- upscaling --------------------------------------------------------------------------------------


def device_of(model: nn.Module) -> torch.device:
    """Where a module's first parameter (or buffer) lives; the CPU for a module without tensors."""
    import torch

    tensor = next(iter(model.parameters()), None)
    if tensor is None:
        tensor = next(iter(model.buffers()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def pad_to_min_size(x: torch.Tensor, min_size: int) -> torch.Tensor:
    """Edge-pad (``replicate``) an NCHW batch on the bottom and right so both sides are at least ``min_size``.

    Some networks need a few pixels (ESA's stride-2 conv and pool): the upscaler and the export parity
    check feed them the same padded input, and the caller crops the output.
    """
    import torch

    h, w = x.shape[-2:]
    if h >= min_size and w >= min_size:
        return x
    return torch.nn.functional.pad(x, (0, max(0, min_size - w), 0, max(0, min_size - h)), mode="replicate")


@dataclass(frozen=True)
class Upscaler:
    """A network as an upscaler: ``[0, 1]`` RGB in, ``[0, 1]`` RGB ``scale`` times larger out.

    The network maps NCHW RGB in ``[0, input_range]`` to the same range. For one call the input is
    ``x * input_range``, edge-padded (``replicate``) on the bottom and right to ``min_size`` when a
    side is shorter (ESA's pooling needs that much), run under :func:`torch.inference_mode` in eval
    mode on ``device``, cropped back to ``scale`` times the unpadded size and divided by
    ``input_range``. ``scale`` is needed only to tile whole images (:meth:`upscale_image`); the scale
    probe, which runs candidates before the scale is known, leaves it None. ``source`` names the model
    in messages.
    """

    model: nn.Module
    scale: int | None = None
    input_range: float = 1.0
    min_size: int = 1
    device: str | torch.device = "cpu"
    source: str = "model"

    @classmethod
    def of(cls, desc: SRDescriptor, device: str | torch.device = "cpu") -> Upscaler:
        """The upscaler of a loaded network (its scale, input range and smallest input side)."""
        return cls(desc.model, desc.scale, float(desc.input_range), int(desc.min_size), device, str(desc.source or desc.arch))

    @contextmanager
    def placed(self) -> Iterator[nn.Module]:
        """The model in eval mode on ``device`` inside the block; every module's flag and the device restored after.

        Nested blocks are free: the inner one finds the state it sets and restores that same state.
        """
        import torch

        flags = [(m, m.training) for m in self.model.modules()]
        before, target = device_of(self.model), torch.device(self.device)
        moved = before != target
        if moved:
            self.model.to(target)
        self.model.eval()
        try:
            yield self.model
        finally:
            if moved:
                self.model.to(before)
            for module, training in flags:
                module.training = training

    def model_input(self, x: torch.Tensor) -> torch.Tensor:
        """``[0, 1]`` NCHW -> what the network is fed: on ``device``, times ``input_range``, padded to ``min_size``."""
        import torch

        x = x.to(self.device, torch.float32)
        x = x * self.input_range if self.input_range != 1.0 else x
        return pad_to_min_size(x, self.min_size)

    def run_model(self, x: torch.Tensor) -> torch.Tensor:
        """The network's forward pass alone on a :meth:`model_input` (what ``bench`` times); call inside :meth:`placed`."""
        import torch

        with torch.inference_mode():
            return self.model(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, h, w)`` in ``[0, 1]`` -> the output in about ``[0, 1]`` (float32, not clamped), on x's device.

        Padding is cropped off by the factor the output shows (``out_h / padded_h``), never by ``scale``:
        a network whose output is not ``scale`` times its input is seen as it is by the size checks.
        """
        h, w = x.shape[-2:]
        with self.placed():
            fed = self.model_input(x)
            y = self.run_model(fed)
        if tuple(fed.shape[-2:]) != (h, w):
            sh, sw = y.shape[-2] // fed.shape[-2], y.shape[-1] // fed.shape[-1]
            y = y[..., : sh * h, : sw * w]
        y = y.float()
        y = y / self.input_range if self.input_range != 1.0 else y
        return y.to(x.device)

    __call__ = forward  # an Upscaler can stand where a module is called: tiling, probes

    def upscale_uint8(self, lr: np.ndarray) -> np.ndarray:
        """``uint8`` LR (``HxW`` gray, replicated, or ``HxWx3``) -> ``uint8`` SR ``sHxsWx3``.

        ``round(clip(y * 255, 0, 255))``: the protocol of the official test scripts (:mod:`.metrics.evaluate`).
        """
        import torch

        from .metrics.color import gray_to_rgb

        rgb = torch.from_numpy(np.ascontiguousarray(gray_to_rgb(lr))).permute(2, 0, 1)[None]
        y = self.forward(rgb.to(torch.float32) / 255.0)
        return (y[0] * 255.0).clamp_(0, 255).round_().permute(1, 2, 0).to(torch.uint8).numpy()

    def upscale_image(self, image: LoadedImage, plan: TilePlan, on_tile: TileCallback | None = None) -> Image.Image:
        """A decoded image -> its 8-bit output image, tile by tile (:func:`scales_cli.imaging.upscale_loaded`)."""
        from .imaging import upscale_loaded

        if self.scale is None:
            raise ScalesError(f"{self.source}: upscaling an image needs the model's scale")
        with self.placed():
            return upscale_loaded(self, self.scale, image, plan, on_tile=on_tile)

