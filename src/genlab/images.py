"""genlab's image convention, defined here and nowhere else.

Images are stored as grey levels, uint8 0..255 or uint16 0..65535 (``WHITE``: the level of white
at each depth), in (N, C, H, W) tensors or, read from and written to files, (H, W, C) arrays.
Networks, objectives and samplers see float32 in [-1, 1]; Bernoulli models see [0, 1]
(``to_unit`` / ``from_unit``). Every conversion between these goes through this module: a test
fails on a white level or a [-1, 1] scale written as a number anywhere else.
"""

from __future__ import annotations

import numpy as np
import torch

from genlab.errors import DataError

WHITE = {torch.uint8: 255, torch.uint16: 65535}
"""the grey level of white at each stored depth"""
WHITE_8 = WHITE[torch.uint8]
"""white in 8-bit grey levels: the unit of 8-bit noise levels (sigma) and of bin widths"""
NUMPY_DTYPE = {torch.uint8: np.uint8, torch.uint16: np.uint16}


def white_level(dtype: torch.dtype) -> int:
    """The grey level of white at a stored depth: 255 (uint8) or 65535 (uint16)."""
    if dtype not in WHITE:
        raise DataError(f"images must be uint8 or uint16, got {dtype}")
    return WHITE[dtype]


def bits(dtype: torch.dtype) -> int:
    """Bits per stored grey level: 8 or 16."""
    return white_level(dtype).bit_length()


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 (or float) grey levels 0..255, or uint16 0..65535 -> float32 in [-1, 1]."""
    half = WHITE[torch.uint16 if x.dtype == torch.uint16 else torch.uint8] / 2
    return x.to(torch.float32).div_(half).sub_(1.0)


def to_depth(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """float in [-1, 1] -> grey levels stored as ``dtype``: uint8 0..255 or uint16 0..65535
    (clipped, then rounded)."""
    half = white_level(dtype) / 2
    return ((x.detach().float().clamp(-1, 1) + 1.0) * half).round().to(dtype)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] -> uint8 0..255 (values outside the range are clipped, then rounded)."""
    return to_depth(x, torch.uint8)


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] -> [0, 1] (Bernoulli means, probabilities)."""
    return (x + 1) / 2


def from_unit(p: torch.Tensor) -> torch.Tensor:
    """float in [0, 1] -> [-1, 1]."""
    return p * 2 - 1


def depth_of_array(arr: np.ndarray) -> torch.dtype:
    """The stored depth of an image array read from a file: uint16 for 16-bit, else uint8."""
    return torch.uint16 if arr.dtype == np.uint16 else torch.uint8


def from_array(arr: np.ndarray) -> tuple[torch.Tensor, torch.dtype]:
    """(H, W, C) uint8 or uint16 array (as read from a file) -> ((C, H, W) float in [-1, 1],
    its stored depth)."""
    depth = depth_of_array(arr)
    x = torch.from_numpy(arr.astype(np.float32)).permute(2, 0, 1)
    return x.div_(WHITE[depth] / 2).sub_(1.0), depth


def to_array(x: torch.Tensor, depth: torch.dtype) -> np.ndarray:
    """(C, H, W) float in [-1, 1] -> (H, W, C) array of grey levels at ``depth``."""
    levels = to_depth(x, depth)
    return levels.permute(1, 2, 0).numpy().astype(NUMPY_DTYPE[depth])
