"""The 20 shape families of the synthetic data: inside tests in an object's own frame (unit
scale, y down), with exactly rounded tensor operations only, so rendering is bitwise the same
in any batch. ``SHAPES[k]`` draws class ``k + 1`` (see :data:`interp.data.synthetic.SYNTHETIC_CLASSES`)."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor


def _polygon(sides: int) -> Callable[[Tensor, Tensor], Tensor]:
    """Regular polygon of circumradius 1, a vertex up: the intersection of its half-planes."""
    apothem = math.cos(math.pi / sides)
    angles = [-math.pi / 2 + 2 * math.pi * (k + 0.5) / sides for k in range(sides)]  # edge midpoints
    normals = [(math.cos(a), math.sin(a)) for a in angles]

    def inside(x: Tensor, y: Tensor) -> Tensor:
        result = torch.ones_like(x, dtype=torch.bool)
        for nx, ny in normals:
            result &= x * nx + y * ny <= apothem
        return result

    return inside


def _disk(x: Tensor, y: Tensor) -> Tensor:
    return x * x + y * y <= 1.0


def _square(x: Tensor, y: Tensor) -> Tensor:
    return torch.maximum(x.abs(), y.abs()) <= 0.78


def _cross(x: Tensor, y: Tensor) -> Tensor:
    ax, ay = x.abs(), y.abs()
    return ((ax <= 0.3) & (ay <= 1.0)) | ((ay <= 0.3) & (ax <= 1.0))


def _heart(x: Tensor, y: Tensor) -> Tensor:
    hx, hy = x * 1.25, 0.15 - y * 1.25
    a = hx * hx + hy * hy - 1.0
    return a * a * a - hx * hx * hy * hy * hy <= 0.0


def _ring(x: Tensor, y: Tensor) -> Tensor:
    r2 = x * x + y * y
    return (r2 <= 1.0) & (r2 >= 0.3)


def _diamond(x: Tensor, y: Tensor) -> Tensor:
    return x.abs() + y.abs() <= 1.0


def _bar(x: Tensor, y: Tensor) -> Tensor:
    return (x.abs() <= 1.0) & (y.abs() <= 0.26)


def _crescent(x: Tensor, y: Tensor) -> Tensor:
    bite = (x - 0.45) * (x - 0.45) + y * y
    return (x * x + y * y <= 1.0) & (bite > 0.64)


def _ellipse(x: Tensor, y: Tensor) -> Tensor:
    z = y / 0.55
    return x * x + z * z <= 1.0


def _frame(x: Tensor, y: Tensor) -> Tensor:
    m = torch.maximum(x.abs(), y.abs())
    return (m <= 0.8) & (m >= 0.45)


def _flower(x: Tensor, y: Tensor) -> Tensor:
    r = torch.sqrt(x * x + y * y)
    c = torch.where(r > 0, x / torch.where(r > 0, r, torch.ones_like(r)), torch.ones_like(r))
    c2 = c * c
    cos5 = c * (c2 * c2 * 16.0 - c2 * 20.0 + 5.0)  # Chebyshev T5: cos(5 theta)
    return r <= cos5 * 0.38 + 0.62


def _chevron(x: Tensor, y: Tensor) -> Tensor:
    edge = x.abs() * 0.9 - 0.55
    return (x.abs() <= 0.95) & (y >= edge) & (y <= edge + 0.6)


def _half_disk(x: Tensor, y: Tensor) -> Tensor:
    z = y - 0.4
    return (x * x + z * z <= 1.0) & (z <= 0.0)


def _star(x: Tensor, y: Tensor) -> Tensor:
    ax, ay = x.abs(), y.abs()  # four-point star: two crossed thin rhombi
    return (ax + ay * 2.2 <= 1.0) | (ax * 2.2 + ay <= 1.0)


def _ell(x: Tensor, y: Tensor) -> Tensor:
    upright = (x >= -0.8) & (x <= -0.2) & (y >= -0.8) & (y <= 0.8)
    foot = (x >= -0.8) & (x <= 0.8) & (y >= 0.2) & (y <= 0.8)
    return upright | foot


def _trapezoid(x: Tensor, y: Tensor) -> Tensor:
    return (y.abs() <= 0.6) & (x.abs() <= y * (0.4 / 0.6) + 0.55)


def _bowtie(x: Tensor, y: Tensor) -> Tensor:
    return (y.abs() <= x.abs() * 0.85 + 0.08) & (x.abs() <= 0.95)


SHAPES: tuple[Callable[[Tensor, Tensor], Tensor], ...] = (
    _disk, _square, _polygon(3), _cross, _heart,
    _ring, _diamond, _polygon(5), _bar, _crescent,
    _ellipse, _frame, _polygon(6), _flower, _chevron,
    _half_disk, _star, _ell, _trapezoid, _bowtie,
)  # fmt: skip
