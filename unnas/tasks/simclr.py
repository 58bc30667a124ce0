"""Contrastive instance discrimination: SimCLR (Chen et al., ICML 2020), augmentations batched on
the device.

Every image yields two views (image-major: views 2i and 2i + 1 come from image i), each drawn
independently as SimCLR's augmentation, in this order, every random draw from ``generator``
(one tensor per kind for all 2B views, in the order listed):

1. random resized crop: area fraction ``u ~ U[simclr_crop_scale, 1]``, aspect ratio
   ``r = exp(U[log 3/4, log 4/3])``, box sides ``sqrt(u r)`` and ``sqrt(u / r)`` of the image's
   (clamped to 1: no rejection loop), top-left uniform where the box fits; resampled bilinearly
   (``grid_sample``, align_corners=False, border padding) to the image size;
2. horizontal flip with probability 0.5 (folded into the crop's sampling grid);
3. colour jitter with probability ``simclr_jitter_prob`` (0.8), strength s = ``simclr_jitter``:
   brightness, contrast and saturation factors ``U[1 - 0.8 s, 1 + 0.8 s]``, hue shift
   ``U[-0.2 s, 0.2 s]`` (torchvision's ``ColorJitter(0.8 s, 0.8 s, 0.8 s, 0.2 s)`` formulas, in
   that fixed order);
4. greyscale with probability ``simclr_gray_prob`` (0.2), ITU-R 601 luma replicated to 3 channels;
5. Gaussian blur with probability ``simclr_blur_prob`` (0.5), kernel 10% of the side (odd, >= 3),
   sigma ``U[0.1, 2.0] * side / 224`` (SimCLR's ImageNet blur scaled to our image sizes),
   reflect padding.

Then normalisation with the data set's mean/std. Test batches draw the same way from the seeded
generator (deterministic for a seed). Targets: the index of each view's positive (i XOR 1).

Head: global average pool, then SimCLR's projection ``g(h) = W2 ReLU(W1 h)`` (W1: C -> C,
W2: C -> ``simclr_proj_dim``). Loss: NT-Xent, the cross-entropy over each view's cosine
similarities to the other 2B - 1 views divided by ``simclr_temperature``, averaged over all 2B
views. Metric: top-1 (and top-5) of picking the positive among the other 2B - 1 views of the
batch (chance: 100 / (2B - 1)); with DDP each rank's batch is its own set of negatives.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import Task, TopKMeter
from .registry import TASKS

LUMA = (0.2989, 0.587, 0.114)   # torchvision rgb_to_grayscale (ITU-R 601 luma as it rounds it)
RATIO = (3.0 / 4.0, 4.0 / 3.0)


def _blend(a: torch.Tensor, b: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (factor * a + (1.0 - factor) * b).clamp_(0.0, 1.0)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    v = maxc
    s = torch.where(maxc > 0, delta / maxc.clamp_min(1e-12), torch.zeros_like(maxc))
    safe = delta.clamp_min(1e-12)
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    return torch.stack([h, s, v], 1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(1)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.long() % 6
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    choices = [torch.stack(c, 1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))]
    out = torch.zeros_like(x)
    for k, c in enumerate(choices):
        out = torch.where((i == k).unsqueeze(1), c, out)
    return out


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of (N, 3, H, W) images in [0, 1] by ``shift`` (N,) turns."""
    hsv = rgb_to_hsv(x)
    h = (hsv[:, 0] + shift.view(-1, 1, 1)) % 1.0
    return hsv_to_rgb(torch.stack([h, hsv[:, 1], hsv[:, 2]], 1))


def blur_kernel_size(side: int) -> int:
    k = int(0.1 * side)
    return max(3, k + 1 - k % 2)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, k: int) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) with one sigma per image, reflect padding."""
    n, c, h, w = x.shape
    r = torch.arange(k, device=x.device, dtype=x.dtype) - (k - 1) / 2
    ker = torch.exp(-r.view(1, -1) ** 2 / (2 * sigma.view(-1, 1).to(x.dtype) ** 2))
    ker = (ker / ker.sum(1, keepdim=True)).repeat_interleave(c, 0)            # (N C, k)
    pad = k // 2
    y = x.reshape(1, n * c, h, w)
    y = F.conv2d(F.pad(y, (pad, pad, 0, 0), mode="reflect"), ker.view(n * c, 1, 1, k), groups=n * c)
    y = F.conv2d(F.pad(y, (0, 0, pad, pad), mode="reflect"), ker.view(n * c, 1, k, 1), groups=n * c)
    return y.view(n, c, h, w)


class ProjectionHead(nn.Module):
    """Global average pool, then g(h) = W2 ReLU(W1 h) (SimCLR's projection MLP)."""

    def __init__(self, in_channels: int, out_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(in_channels, in_channels)
        self.fc2 = nn.Linear(in_channels, out_dim)

    def forward(self, features, input_hw=None):
        h = F.adaptive_avg_pool2d(features, 1).flatten(1)
        return self.fc2(F.relu(self.fc1(h)))


def similarity_logits(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """(N, N) cosine similarities / temperature, each view's own entry excluded (-inf)."""
    z = F.normalize(z.float(), dim=1)
    sim = z @ z.t() / temperature
    eye = torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device)
    return sim.masked_fill(eye, float("-inf"))


def nt_xent(z: torch.Tensor, positives: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent: mean over the N views of -log softmax(sim / t)[positive]."""
    return F.cross_entropy(similarity_logits(z, temperature), positives)


class ContrastiveMeter(TopKMeter):
    """Top-1/top-5 (%) of the positive among the other views of the batch, by cosine similarity."""

    @torch.no_grad()
    def update(self, logits, targets, loss=None):
        sim = similarity_logits(logits, 1.0)
        k = min(self.k, max(sim.shape[1] - 1, 1))
        hit = sim.topk(k, dim=1).indices == targets[:, None]   # own entry is -inf: never picked first
        self.add_hits(hit, loss)


@TASKS.register("simclr", aliases=("contrastive", "nt_xent"))
class SimCLRTask(Task):
    name = "simclr"
    images_per_sample = 2
    per_sample_cross_entropy = False   # the loss contrasts the views of the whole batch
    per_image_logits = False

    def __init__(self, data, simclr_temperature: float = 0.5, simclr_proj_dim: int = 128,
                 simclr_crop_scale: float = 0.08, simclr_jitter: float = 0.5, simclr_jitter_prob: float = 0.8,
                 simclr_gray_prob: float = 0.2, simclr_blur_prob: float = 0.5, **options):
        super().__init__(data, simclr_temperature=simclr_temperature, simclr_proj_dim=simclr_proj_dim,
                         simclr_crop_scale=simclr_crop_scale, simclr_jitter=simclr_jitter,
                         simclr_jitter_prob=simclr_jitter_prob, simclr_gray_prob=simclr_gray_prob,
                         simclr_blur_prob=simclr_blur_prob, **options)
        self.temperature = float(simclr_temperature)
        self.proj_dim = int(simclr_proj_dim)
        self.crop_scale = float(simclr_crop_scale)
        self.jitter = float(simclr_jitter)
        self.jitter_prob = float(simclr_jitter_prob)
        self.gray_prob = float(simclr_gray_prob)
        self.blur_prob = float(simclr_blur_prob)
        if self.temperature <= 0:
            raise ValueError(f"simclr_temperature must be > 0, got {simclr_temperature}")
        if self.proj_dim < 1:
            raise ValueError(f"simclr_proj_dim must be >= 1, got {simclr_proj_dim}")
        if not 0.0 < self.crop_scale <= 1.0:
            raise ValueError(f"simclr_crop_scale must be in (0, 1], got {simclr_crop_scale}")
        if not 0.0 <= self.jitter <= 1.25:
            raise ValueError(f"simclr_jitter must be in [0, 1.25] (factors stay >= 0), got {simclr_jitter}")
        for key, p in (("simclr_jitter_prob", self.jitter_prob), ("simclr_gray_prob", self.gray_prob),
                       ("simclr_blur_prob", self.blur_prob)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{key} must be in [0, 1], got {p}")

    @property
    def num_outputs(self) -> int:
        return self.proj_dim

    def draw(self, views: int, side: int, generator=None, device="cpu") -> dict:
        """The random choices of ``views`` views (see the module doc for the order of the draws)."""
        def u(lo, hi):
            return lo + (hi - lo) * torch.rand(views, generator=generator, device=device)
        area = u(self.crop_scale, 1.0)
        ratio = torch.exp(u(math.log(RATIO[0]), math.log(RATIO[1])))
        w = torch.sqrt(area * ratio).clamp(max=1.0)
        h = torch.sqrt(area / ratio).clamp(max=1.0)
        left = (1.0 - w) * torch.rand(views, generator=generator, device=device)
        top = (1.0 - h) * torch.rand(views, generator=generator, device=device)
        flip = torch.rand(views, generator=generator, device=device) < 0.5
        jitter = torch.rand(views, generator=generator, device=device) < self.jitter_prob
        s = self.jitter
        brightness, contrast, saturation = (u(1 - 0.8 * s, 1 + 0.8 * s) for _ in range(3))
        hue = u(-0.2 * s, 0.2 * s)
        gray = torch.rand(views, generator=generator, device=device) < self.gray_prob
        blur = torch.rand(views, generator=generator, device=device) < self.blur_prob
        sigma = u(0.1, 2.0) * side / 224.0
        return {"top": top, "left": left, "h": h, "w": w, "flip": flip, "jitter": jitter,
                "brightness": brightness, "contrast": contrast, "saturation": saturation, "hue": hue,
                "gray": gray, "blur": blur, "sigma": sigma}

    def augment(self, x: torch.Tensor, d: dict) -> torch.Tensor:
        """The deterministic part: (N, 3, H, W) float images in [0, 1] -> their views for draws ``d``."""
        n = x.shape[0]
        sx = torch.where(d["flip"], -d["w"], d["w"])
        theta = torch.zeros(n, 2, 3, device=x.device, dtype=x.dtype)
        theta[:, 0, 0] = sx
        theta[:, 0, 2] = 2 * d["left"] + d["w"] - 1
        theta[:, 1, 1] = d["h"]
        theta[:, 1, 2] = 2 * d["top"] + d["h"] - 1
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

        def per_view(v):
            return v.view(n, 1, 1, 1).to(x.dtype)
        j = d["jitter"].view(n, 1, 1, 1)
        y = (x * per_view(d["brightness"])).clamp(0.0, 1.0)
        y = _blend(y, grayscale(y).mean((2, 3), keepdim=True), per_view(d["contrast"]))
        y = _blend(y, grayscale(y), per_view(d["saturation"]))
        y = adjust_hue(y, d["hue"].to(x.dtype))
        x = torch.where(j, y, x)
        x = torch.where(d["gray"].view(n, 1, 1, 1), grayscale(x).expand_as(x), x)
        if d["blur"].any():
            blurred = gaussian_blur(x, d["sigma"], blur_kernel_size(x.shape[-1]))
            x = torch.where(d["blur"].view(n, 1, 1, 1), blurred, x)
        return x

    def make_batch(self, images, labels, train, generator=None):
        b = images.shape[0]
        x = images.float().div(255.0).repeat_interleave(2, dim=0)         # image-major: 2i, 2i + 1
        views = self.augment(x, self.draw(2 * b, images.shape[-1], generator, images.device))
        mean = torch.tensor(self.data.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.data.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        positives = torch.arange(2 * b, device=images.device) ^ 1
        return (views - mean) / std, positives

    def build_head(self, in_channels: int):
        return ProjectionHead(in_channels, self.proj_dim)

    def loss(self, logits, targets):
        return nt_xent(logits, targets, self.temperature)

    def new_meter(self):
        return ContrastiveMeter()

    def chance_level(self) -> float:
        """Depends on the batch: 100 / (2B - 1) for B images; 0 here (no batch size known)."""
        return 0.0

    def describe(self) -> str:
        return (f"{self.name} (2 views per image, projection to {self.proj_dim}, temperature {self.temperature:g}; "
                f"top-1 of the positive in the batch)")
