"""The embedded default data set: procedurally drawn 32x32 scenes, deterministic from a seed.

Each image is an outdoor-like scene: a sky (one of 3 kinds: day, dusk, night; brighter towards the
horizon) above a ground (grass, sand or snow) split at a random horizon line, with one upright
object standing on the ground. The class (10) is the object's *shape*: house, tree, mushroom,
balloon, T-sign, arrow, L-bracket, tower, person, goblet. Objects are 12-22 px tall and placed
near the centre so they cross the 2x2 jigsaw tile borders. Colours depend on the class (each class
draws from 3 of 8 shared palette colours, so colour narrows the class but does not give it
away) and on the background kind. Each pretext task therefore has a real signal:
rotation (sky above ground, objects upright), colorization (sky/ground/object colours follow
from structure), jigsaw (the horizon and the object cross tile borders), and supervised
classification needs shape. Pixel noise and a soft shadow make it non-trivial.
"""
from __future__ import annotations


import torch

from .base import DataInfo, TensorDataset
from .registry import DATASETS

CLASSES = ("house", "tree", "mushroom", "balloon", "t_sign", "arrow", "l_bracket", "tower", "person", "goblet")
SIZE = 32

_PALETTE = torch.tensor([
    [200, 40, 40], [240, 200, 40], [40, 160, 60], [60, 80, 200],
    [150, 70, 30], [230, 230, 230], [40, 40, 40], [170, 60, 190],
], dtype=torch.float32)
# Three palette colours per class, overlapping between classes.
_CLASS_COLOURS = torch.tensor([[0, 4, 5], [2, 4, 1], [0, 5, 4], [0, 1, 3], [6, 1, 5],
                               [3, 0, 7], [6, 7, 2], [5, 6, 4], [3, 7, 0], [1, 7, 3]])
_SKIES = torch.tensor([[[90, 150, 235], [185, 215, 250]],     # day: top colour, horizon colour
                       [[110, 70, 140], [250, 160, 90]],      # dusk
                       [[10, 15, 50], [50, 60, 110]]], dtype=torch.float32)  # night
_GROUNDS = torch.tensor([[70, 140, 50], [200, 180, 120], [225, 230, 240]], dtype=torch.float32)


def _shape_mask(cls: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Boolean mask of shape ``cls`` in object coordinates: u in [-1, 1] across, v in [0, 1] up."""
    au = u.abs()
    inside = (v >= 0) & (v <= 1) & (au <= 1)
    if cls == 0:    # house: body + pitched roof
        m = ((v < 0.6) & (au < 0.7)) | ((v >= 0.6) & (au < 0.9 * (1 - v) / 0.4))
    elif cls == 1:  # tree: trunk + triangular canopy
        m = ((v < 0.35) & (au < 0.15)) | ((v >= 0.3) & (au < (1 - v) / 0.7))
    elif cls == 2:  # mushroom: stem + half-disc cap
        m = ((v < 0.5) & (au < 0.2)) | ((v >= 0.5) & (u ** 2 + ((v - 0.5) / 0.5) ** 2 < 0.9 ** 2))
    elif cls == 3:  # balloon on a string
        m = ((v < 0.5) & (au < 0.08)) | ((u / 0.55) ** 2 + ((v - 0.74) / 0.26) ** 2 < 1)
    elif cls == 4:  # T-sign
        m = ((v > 0.75) & (au < 0.95)) | (au < 0.18)
    elif cls == 5:  # arrow pointing up
        m = ((v >= 0.55) & (au < (1 - v) / 0.45)) | ((v < 0.55) & (au < 0.25))
    elif cls == 6:  # L-bracket
        m = ((u > -0.8) & (u < -0.3)) | ((v < 0.25) & (u > -0.8) & (u < 0.8))
    elif cls == 7:  # tower with a crown
        m = (au < 0.3) | ((v > 0.82) & (au < 0.5) & ((u * 10).floor().remainder(2) == 0))
    elif cls == 8:  # person: legs, body, head
        m = (((v < 0.38) & ((u - 0.15).abs() < 0.09)) | ((v < 0.38) & ((u + 0.15).abs() < 0.09))
             | ((v >= 0.35) & (v < 0.72) & (au < 0.28)) | ((u / 0.2) ** 2 + ((v - 0.86) / 0.13) ** 2 < 1))
    elif cls == 9:  # goblet: base, stem, bowl
        m = (((v < 0.1) & (au < 0.45)) | ((v >= 0.1) & (v < 0.5) & (au < 0.08))
             | ((v >= 0.5) & (au < 0.3 + 0.6 * (v - 0.5))))
    else:
        raise ValueError(cls)
    return m & inside


def make_synthetic(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images (uint8, (n, 3, 32, 32)) and labels (int64), a pure function of ``(n, seed)``."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    labels = torch.randint(0, len(CLASSES), (n,), generator=g)
    ys = torch.arange(SIZE, dtype=torch.float32).view(1, SIZE, 1) + 0.5
    xs = torch.arange(SIZE, dtype=torch.float32).view(1, 1, SIZE) + 0.5

    # Background: sky gradient above a horizon, ground below (slightly darker further down).
    horizon = 13 + 9 * rand(n, 1, 1)
    sky = torch.randint(0, 3, (n,), generator=g)
    ground = torch.randint(0, 3, (n,), generator=g)
    t = (ys / horizon).clamp(0, 1).unsqueeze(-1)                          # 0 at top, 1 at horizon
    sky_rgb = _SKIES[sky, 0].view(n, 1, 1, 3) * (1 - t) + _SKIES[sky, 1].view(n, 1, 1, 3) * t
    depth = ((ys - horizon) / (SIZE - horizon)).clamp(0, 1).unsqueeze(-1)
    ground_rgb = _GROUNDS[ground].view(n, 1, 1, 3) * (1.0 - 0.35 * depth)
    ground_rgb = ground_rgb * (0.9 + 0.2 * rand(n, 1, 1, 3))
    is_sky = (ys < horizon).expand(n, SIZE, SIZE).unsqueeze(-1)
    img = torch.where(is_sky, sky_rgb, ground_rgb)

    # Object: standing on the ground, upright, near the centre.
    height = 12 + 10 * rand(n, 1, 1)
    width = height * (0.35 + 0.2 * rand(n, 1, 1))               # half-width
    base = (horizon + 2 + 7 * rand(n, 1, 1)).clamp(max=SIZE - 1)
    cx = 16 + 8 * (rand(n, 1, 1) - 0.5)
    u = (xs - cx) / width
    v = (base - ys) / height
    mask = torch.zeros(n, SIZE, SIZE, dtype=torch.bool)
    for c in range(len(CLASSES)):
        sel = labels == c
        if sel.any():
            mask[sel] = _shape_mask(c, u[sel], v[sel])
    # Shadow: a soft dark ellipse on the ground at the object's base.
    shadow = (((xs - cx - 2) / (width * 1.3)) ** 2 + ((ys - base) / 1.5) ** 2 < 1) & ~is_sky.squeeze(-1)
    img = torch.where(shadow.unsqueeze(-1), img * 0.6, img)

    colour_slot = torch.randint(0, 3, (n,), generator=g)
    obj_rgb = _PALETTE[_CLASS_COLOURS[labels, colour_slot]]
    # Objects are lit from above: top brighter than bottom.
    shade = (0.75 + 0.35 * v.clamp(0, 1)).unsqueeze(-1)
    obj = obj_rgb.view(n, 1, 1, 3) * shade * (0.85 + 0.3 * rand(n, 1, 1, 1))
    img = torch.where(mask.unsqueeze(-1), obj, img)

    img = img + 10 * torch.randn(img.shape, generator=g)
    images = img.clamp(0, 255).round().to(torch.uint8).permute(0, 3, 1, 2).contiguous()
    return images, labels


# Mean/std of the synthetic images (measured on 10,000 training images, seed 0).
SYNTHETIC_MEAN = (0.4851, 0.4883, 0.4907)
SYNTHETIC_STD = (0.2610, 0.2278, 0.2875)


@DATASETS.register("synthetic", aliases=("default", "embedded"))
def build_synthetic(root: str = "", split: str = "train", num_train: int = 10000, num_test: int = 2000,
                    seed: int = 0, **_):
    n = num_train if split == "train" else num_test
    # Train and test come from disjoint seeds, so no test image is a training image.
    images, labels = make_synthetic(n, seed * 2 + (0 if split == "train" else 1))
    info = DataInfo(num_classes=len(CLASSES), image_size=SIZE, mean=SYNTHETIC_MEAN, std=SYNTHETIC_STD)
    return TensorDataset(images, labels, info, crop_pad=2)


