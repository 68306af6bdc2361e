"""Batch augmentation as tensor ops: one affine matrix per sample, one grid_sample per batch."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine(
    x: torch.Tensor,
    *,
    degrees: float = 12.0,
    scale: tuple[float, float] = (0.9, 1.1),
    shear: float = 0.15,
    translate: float = 0.1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Rotate, scale, shear and shift every image of an (N, C, H, W) batch by its own random amount.

    Images smaller than 4x4 pixels, or 1-pixel strips (flat feature vectors), are returned as they are.

    Examples
    --------
    >>> x = torch.zeros(8, 1, 28, 28)
    >>> random_affine(x).shape
    torch.Size([8, 1, 28, 28])
    """
    n, _, h, w = x.shape
    if h < 4 or w < 4 or n == 0:
        return x
    u = torch.rand(n, 5, generator=generator).to(x.device)
    angle = (u[:, 0] * 2 - 1) * math.radians(degrees)
    s = scale[0] + u[:, 1] * (scale[1] - scale[0])
    sh = (u[:, 2] * 2 - 1) * shear
    tx = (u[:, 3] * 2 - 1) * translate * 2  # affine_grid works in [-1, 1]: a shift of 1 is half the image
    ty = (u[:, 4] * 2 - 1) * translate * 2
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack(
        [torch.stack([cos, -sin + sh * cos, tx], 1), torch.stack([sin, cos + sh * sin, ty], 1)], 1
    ).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def strong_augment(
    x: torch.Tensor,
    *,
    degrees: float = 30.0,
    scale: tuple[float, float] = (0.75, 1.25),
    shear: float = 0.3,
    translate: float = 0.15,
    cutout: float = 0.4,
    contrast: tuple[float, float] = (0.5, 1.5),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The "strong" view of online pseudo-labeling: a larger random affine, a random contrast
    factor and one erased square per image (cutout, ``cutout`` times the shorter side). Whole
    batches as tensor ops. Takes raw pixels (background 0), like :func:`random_affine`.

    Examples
    --------
    >>> strong_augment(torch.ones(4, 1, 28, 28)).shape
    torch.Size([4, 1, 28, 28])
    """
    n, _, h, w = x.shape
    if h < 4 or w < 4 or n == 0:
        return x
    x = random_affine(x, degrees=degrees, scale=scale, shear=shear, translate=translate, generator=generator)
    u = torch.rand(n, 3, generator=generator).to(x.device)
    factor = (contrast[0] + u[:, 0] * (contrast[1] - contrast[0])).to(x.dtype).view(n, 1, 1, 1)
    x = x * factor
    side = max(1, int(round(cutout * min(h, w))))
    top = (u[:, 1] * (h - side + 1)).floor().view(n, 1, 1)
    left = (u[:, 2] * (w - side + 1)).floor().view(n, 1, 1)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    hole = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
    return x.masked_fill(hole.unsqueeze(1), 0.0)
