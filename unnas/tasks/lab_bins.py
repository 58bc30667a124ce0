"""Colour helpers for the colorization task: sRGB -> CIE Lab in torch and the 313 quantised ab bins.

* :func:`rgb_to_lab` reproduces ``skimage.color.rgb2lab`` (sRGB, D65 white, 2-degree observer)
  with batched tensor ops on any device.
* :func:`ab_bins` gives the (313, 2) int64 ab bin centres of Zhang et al. (2016) ("pts_in_hull"),
  a 10-unit grid, sorted by a then b. They are *derived* here, not shipped (see below), and
  cached on disk.
* :func:`nearest_bin` / :func:`nearest_bins` map ab values to the index of the nearest bin(s)
  (exact Euclidean 1-NN / k-NN, ties to the lowest index), batched on the device.
* :func:`lightness_and_bins` is the uint8 fast path of the colorization task: L (optionally
  normalised) and the nearest bins of a uint8 batch without a full Lab conversion. Both depend on
  a pixel only through its (r, g, b) bytes: the bin is one gather in a per-colour table of all
  2^24 colours (:func:`rgb_bin_table`, built once with :func:`nearest_bin` on :func:`rgb_to_lab`,
  cached on disk, spot-checked on load), and L uses a 3 x 256 table of each channel's linear-light
  contribution to Y plus one cube root per pixel (the same values as :func:`rgb_to_lab` up to float
  rounding; no quantisation of Y). ~0.8 ms per 224 px image on one CPU thread.

How the bins are derived. Every sRGB colour's (a, b) lies in one 10x10 cell of the grid; the grid
points that are a corner of a cell holding at least one sRGB colour (the support of bilinear
interpolation over the gamut) give 309 bins. Sampling the surface of the RGB cube is enough, since
the ab projection of the gamut solid equals that of its surface (a vertical Lab fibre ends on the
surface). The published set of Zhang et al. has 4 more bins at the very edge of the gamut, which
no sRGB colour supports under the skimage conversion (they were evidently fixed from data):
(40, 90), (100, -90), (100, -10) and (100, 0). We add these 4 explicitly (``_EDGE_BINS``), which
gives the published 313 bins exactly (checked: count, range, order, first [-90, 50], last
[100, 0]). No single distance threshold to the gamut separates the published set from the rest,
so no tolerance rule can replace the 4 explicit bins.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from unnas.utils.io import cache_dir, save_to_cache

# skimage's constants: sRGB (D65) -> XYZ matrix and the D65 / 2-degree reference white.
XYZ_FROM_RGB = ((0.412453, 0.357580, 0.180423),
                (0.212671, 0.715160, 0.072169),
                (0.019334, 0.119193, 0.950227))
WHITE_D65 = (0.95047, 1.0, 1.08883)
GRID = 10
NUM_BINS = 313
_EDGE_BINS = ((40, 90), (100, -90), (100, -10), (100, 0))
_BINS_VERSION = 1


def _linear_lut(device, dtype) -> torch.Tensor:
    """sRGB gamma expansion of the 256 uint8 levels (float64 values, then cast)."""
    v = np.arange(256, dtype=np.float64) / 255.0
    lin = np.where(v > 0.04045, ((v + 0.055) / 1.055) ** 2.4, v / 12.92)
    return torch.as_tensor(lin, dtype=dtype, device=device)


def _linearize(rgb: torch.Tensor, dtype) -> torch.Tensor:
    if rgb.dtype == torch.uint8:
        return _linear_lut(rgb.device, dtype)[rgb.long()]
    x = rgb.to(dtype)
    return torch.where(x > 0.04045, ((x + 0.055) / 1.055) ** 2.4, x / 12.92)


def rgb_to_lab(rgb: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(..., 3, H, W) RGB, uint8 or float in [0, 1] -> (..., 3, H, W) Lab (L in [0, 100]).

    Same formulas and constants as ``skimage.color.rgb2lab`` (default D65, observer 2).
    """
    lin = _linearize(rgb, dtype)
    m = torch.tensor(XYZ_FROM_RGB, dtype=dtype, device=rgb.device)
    m = m / torch.tensor(WHITE_D65, dtype=dtype, device=rgb.device)[:, None]  # fold in the white point
    xyz = torch.einsum("ij,...jhw->...ihw", m, lin)
    f = torch.where(xyz > 0.008856, xyz.clamp_min(0).pow(1.0 / 3.0), 7.787 * xyz + 16.0 / 116.0)
    fx, fy, fz = f.unbind(-3)
    return torch.stack((116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)), dim=-3)


def rgb_to_lightness(rgb: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(..., 3, H, W) RGB -> (..., 1, H, W) L only (the values of ``rgb_to_lab(rgb)[..., :1, :, :]``;
    for uint8 input through a 3 x 256 LUT, equal to float rounding)."""
    if rgb.dtype == torch.uint8:
        return _uint8_pass(rgb, True, False, dtype=dtype)[0]
    lin = _linearize(rgb, dtype)
    wy = torch.tensor(XYZ_FROM_RGB[1], dtype=dtype, device=rgb.device) / WHITE_D65[1]
    y = torch.einsum("j,...jhw->...hw", wy, lin).unsqueeze(-3)
    f = torch.where(y > 0.008856, y.clamp_min(0).pow(1.0 / 3.0), 7.787 * y + 16.0 / 116.0)
    return 116.0 * f - 16.0


def _cube_surface(n: int) -> torch.Tensor:
    """(6 n^2, 3, 1, 1) float64 RGB samples on the faces of the unit cube."""
    v = torch.linspace(0, 1, n, dtype=torch.float64)
    u, w = torch.meshgrid(v, v, indexing="ij")
    u, w = u.reshape(-1), w.reshape(-1)
    faces = []
    for axis in range(3):
        others = [i for i in range(3) if i != axis]
        for value in (0.0, 1.0):
            f = torch.empty(u.numel(), 3, dtype=torch.float64)
            f[:, axis] = value
            f[:, others[0]] = u
            f[:, others[1]] = w
            faces.append(f)
    return torch.cat(faces)[:, :, None, None]


def derive_ab_bins(samples_per_side: int = 256) -> np.ndarray:
    """Derive the 313 bins (see the module docstring): (313, 2) int64 sorted by a then b."""
    lab = rgb_to_lab(_cube_surface(samples_per_side), dtype=torch.float64)[:, :, 0, 0]
    ab = lab[:, 1:] / GRID
    lo, hi = ab.floor().long(), ab.ceil().long()
    corners = torch.cat([lo, hi, torch.stack((lo[:, 0], hi[:, 1]), 1), torch.stack((hi[:, 0], lo[:, 1]), 1)])
    pts = {tuple(p) for p in (torch.unique(corners, dim=0) * GRID).tolist()}
    pts.update(_EDGE_BINS)
    bins = np.array(sorted(pts), dtype=np.int64)  # tuple order = by a, then b
    if bins.shape != (NUM_BINS, 2):
        raise RuntimeError(f"derived {len(bins)} ab bins instead of {NUM_BINS}; the Lab conversion changed")
    return bins


@lru_cache(maxsize=1)
def ab_bins() -> np.ndarray:
    """The 313 ab bin centres, derived once and cached in :func:`cache_dir`."""
    path = cache_dir() / f"ab_bins_313_v{_BINS_VERSION}.npy"
    if path.is_file():
        try:
            bins = np.load(path)
            if bins.shape == (NUM_BINS, 2) and bins.dtype == np.int64:
                return bins
        except (OSError, ValueError, EOFError):
            pass
    bins = derive_ab_bins()
    save_to_cache(path, bins)
    return bins


class BinLookup:
    """Exact nearest-bin queries for ab values on one device.

    Fast path: round (a, b) to the 10-grid; when that grid point is a bin it is the nearest one
    (the rounded point is the nearest grid point). Pixels whose rounded point is not a bin, or that
    sit within 1e-4 of a rounding tie, fall back to a chunked brute-force distance argmin.
    """

    _PAD = 3  # grid cells of margin around the bins in the lookup table

    def __init__(self, bins: np.ndarray, device):
        self.device = torch.device(device)
        self.bins = torch.as_tensor(bins, dtype=torch.float32, device=self.device)
        gi = torch.as_tensor(bins // GRID, dtype=torch.long, device=self.device)
        self.lo = gi.min(0).values - self._PAD
        size = gi.max(0).values - self.lo + 1 + self._PAD
        self.size = size
        self.table = torch.full((int(size[0]), int(size[1])), -1, dtype=torch.long, device=self.device)
        self.table[gi[:, 0] - self.lo[0], gi[:, 1] - self.lo[1]] = torch.arange(len(bins), device=self.device)

    def _grid_index(self, ab: torch.Tensor):
        """(N, 2) -> (N,) long index into the flattened table, or -1 off the table."""
        g = ab / GRID
        r = torch.round(g)
        tie = ((g - r).abs() - 0.5).abs().lt(1e-5).any(1)
        i = r.long() - self.lo
        inside = ((i >= 0) & (i < self.size)).all(1) & ~tie
        flat = i[:, 0].clamp(0, int(self.size[0]) - 1) * int(self.size[1]) + i[:, 1].clamp(0, int(self.size[1]) - 1)
        return torch.where(inside, flat, torch.full_like(flat, -1))

    def _brute(self, ab: torch.Tensor, k: int, chunk: int = 65536):
        dists, idx = [], []
        for s in range(0, ab.shape[0], chunk):
            d2 = (ab[s:s + chunk, None, :] - self.bins[None]).pow(2).sum(-1)
            top = d2.topk(k, dim=1, largest=False, sorted=True)
            dists.append(top.values)
            idx.append(top.indices)
        if not idx:
            return ab.new_zeros(0, k), torch.zeros(0, k, dtype=torch.long, device=ab.device)
        return torch.cat(dists), torch.cat(idx)

    def nearest(self, ab: torch.Tensor) -> torch.Tensor:
        """(N, 2) float ab -> (N,) long index of the nearest bin."""
        ab = ab.float()
        flat = self._grid_index(ab)
        out = torch.where(flat >= 0, self.table.view(-1)[flat.clamp_min(0)], torch.full_like(flat, -1))
        miss = (out < 0).nonzero().squeeze(1)
        if miss.numel():
            d2 = (ab[miss, None, :] - self.bins[None]).pow(2).sum(-1) if miss.numel() <= 65536 else None
            out[miss] = d2.argmin(1) if d2 is not None else self._brute(ab[miss], 1)[1][:, 0]
        return out

    def nearest_k(self, ab: torch.Tensor, k: int):
        """(N, 2) -> (squared distances (N, k), indices (N, k)) of the k nearest bins, nearest first.

        Candidates are the bins in a 5x5 grid window around the rounded point; any point outside
        the window is more than 2.5 cells away, so the window answer is exact when its k-th distance
        is at most 2.5 cells; the rest fall back to brute force.
        """
        ab = ab.float()
        g = torch.round(ab / GRID).long() - self.lo
        off = torch.arange(-2, 3, device=ab.device)
        oa, ob = torch.meshgrid(off, off, indexing="ij")
        ca = g[:, None, 0] + oa.reshape(1, -1)
        cb = g[:, None, 1] + ob.reshape(1, -1)
        valid = (ca >= 0) & (ca < self.size[0]) & (cb >= 0) & (cb < self.size[1])
        cand = self.table[ca.clamp(0, int(self.size[0]) - 1), cb.clamp(0, int(self.size[1]) - 1)]
        cand = torch.where(valid, cand, torch.full_like(cand, -1))
        d2 = (ab[:, None, :] - self.bins[cand.clamp_min(0)]).pow(2).sum(-1)
        d2 = torch.where(cand >= 0, d2, torch.full_like(d2, float("inf")))
        top = d2.topk(k, dim=1, largest=False, sorted=True)
        dist, idx = top.values, cand.gather(1, top.indices)
        bad = ~(dist[:, -1] <= (2.5 * GRID) ** 2)
        miss = bad.nonzero().squeeze(1)
        if miss.numel():
            dist[miss], idx[miss] = self._brute(ab[miss], k)
        return dist, idx


@lru_cache(maxsize=8)
def bin_lookup(device: str) -> BinLookup:
    return BinLookup(ab_bins(), device)


# uint8 fast path. Both targets and L input are functions of the (r, g, b) byte triple, so a uint8
# batch is turned into per-channel int32 "offset codes" o_c = v_c + 256 c once and both come from it:
# the colour code sum_c o_c << (16, 8, 0)[c] = (r << 16 | g << 8 | b) + _CODE_BIAS indexes the
# per-colour bin table (stored behind _CODE_BIAS padding entries), and o_c indexes the 3 x 256
# table of weighted linear-light contributions to Y (the L LUT).
_CHANNEL_OFFSETS = (0, 256, 512)
_CODE_BIAS = (_CHANNEL_OFFSETS[1] << 8) + _CHANNEL_OFFSETS[2]
_RGB_BIN_LUT: dict = {}   # device -> (_CODE_BIAS + 2^24,) int16, the table behind the padding
_Y_LUT: dict = {}         # (device, dtype) -> (768,) weighted linear-light contributions to Y
_TABLE_CHECK_COLOURS = 4096


def rgb_bin_table(device) -> torch.Tensor:
    """(2^24,) int16: nearest bin of every 8-bit sRGB colour (index r*65536 + g*256 + b).

    Built once (~3-12 s on a CPU) and cached on disk (32 MiB) and per device, with exactly
    ``nearest_bin(rgb_to_lab(colour)[ab])``, so looking a pixel up gives the same bin as converting
    it; it turns colorization targets of uint8 images into one gather.
    """
    return _padded_rgb_bin_table(device)[_CODE_BIAS:]


def _padded_rgb_bin_table(device) -> torch.Tensor:
    key = str(torch.device(device))
    if key not in _RGB_BIN_LUT:
        table = _cached_rgb_bin_table()
        padded = torch.zeros(_CODE_BIAS + table.numel(), dtype=torch.int16)
        padded[_CODE_BIAS:] = table
        _RGB_BIN_LUT[key] = padded.to(device)
    return _RGB_BIN_LUT[key]


def _check_colours(n: int = _TABLE_CHECK_COLOURS) -> torch.Tensor:
    """(n,) int64 colour codes for spot checks: the 8 cube corners, greys, then fixed random ones."""
    corners = [(r << 16) | (g << 8) | b for r in (0, 255) for g in (0, 255) for b in (0, 255)]
    greys = [(v << 16) | (v << 8) | v for v in range(0, 256, 17)]
    fixed = torch.tensor(corners + greys, dtype=torch.int64)
    rand = torch.randint(0, 1 << 24, (n - len(fixed),), generator=torch.Generator().manual_seed(313))
    return torch.cat([fixed, rand])


def _codes_to_rgb(codes: torch.Tensor) -> torch.Tensor:
    """(n,) int colour codes -> (n, 3, 1, 1) uint8 images."""
    return torch.stack([(codes >> 16) & 255, (codes >> 8) & 255, codes & 255], 1).to(torch.uint8)[:, :, None, None]


def _table_spot_check(table: torch.Tensor) -> bool:
    """Whether ``table`` gives the converted colour's nearest bin on :func:`_check_colours`."""
    codes = _check_colours()
    ab = rgb_to_lab(_codes_to_rgb(codes))[:, 1:, 0, 0]
    return torch.equal(table[codes].long(), nearest_bin(ab))


def _cached_rgb_bin_table() -> torch.Tensor:
    """The table on the CPU, from the disk cache when there (32 MiB .npy) and valid, else built and saved.

    A cached file is used only when it has the right shape, dtype and range and passes a spot check
    against the direct conversion on 4096 colours (cube corners, greys, fixed random colours);
    otherwise it is rebuilt and replaced atomically.
    """
    path = cache_dir() / f"rgb_bin_table_v{_BINS_VERSION}.npy"
    if path.is_file():
        try:
            arr = np.load(path)
            if (arr.shape == (1 << 24,) and arr.dtype == np.int16 and 0 <= arr.min() and arr.max() < NUM_BINS
                    and _table_spot_check(torch.from_numpy(arr))):
                return torch.from_numpy(arr)
        except (OSError, ValueError, EOFError):
            pass
    table = _build_rgb_bin_table("cpu")
    save_to_cache(path, table.numpy())
    return table


def _build_rgb_bin_table(device) -> torch.Tensor:
    table = torch.empty(1 << 24, dtype=torch.int16, device=device)
    levels = torch.arange(256, device=device, dtype=torch.uint8)
    g, b = torch.meshgrid(levels, levels, indexing="ij")
    for r in range(0, 256, 16):   # 16 red levels (1M colours) per chunk bounds the peak memory
        rr = torch.arange(r, r + 16, device=device, dtype=torch.uint8).view(16, 1, 1).expand(16, 256, 256)
        rgb = torch.stack((rr, g.expand(16, -1, -1), b.expand(16, -1, -1)), dim=1)  # (16, 3, 256, 256)
        ab = rgb_to_lab(rgb)[:, 1:].permute(0, 2, 3, 1)
        table[r << 16:(r + 16) << 16] = nearest_bin(ab).reshape(-1).to(torch.int16)
    return table


def _y_lut(device, dtype) -> torch.Tensor:
    """(768,): entry 256 c + v is channel c's contribution to Y / Y_white at level v (float64, then cast)."""
    key = (str(torch.device(device)), dtype)
    if key not in _Y_LUT:
        v = np.arange(256, dtype=np.float64) / 255.0
        lin = np.where(v > 0.04045, ((v + 0.055) / 1.055) ** 2.4, v / 12.92)
        w = np.asarray(XYZ_FROM_RGB[1], dtype=np.float64) / WHITE_D65[1]
        _Y_LUT[key] = torch.as_tensor((w[:, None] * lin[None]).reshape(-1), dtype=dtype, device=device)
    return _Y_LUT[key]


def _offset_codes(images: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> contiguous int32 (..., 3, H, W), channel c's value + 256 c."""
    off = torch.tensor(_CHANNEL_OFFSETS, dtype=torch.int32, device=images.device).view(3, 1, 1)
    return images.to(torch.int32, memory_format=torch.contiguous_format).add_(off)


def _bins_from_offsets(o: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Offset codes (..., 3, H, W) -> (..., H, W) long nearest bins (one gather in the padded table)."""
    code = (o[..., 0, :, :] << 16).add_(o[..., 1, :, :] << 8).add_(o[..., 2, :, :])  # colour code + _CODE_BIAS
    bins = _padded_rgb_bin_table(o.device).index_select(0, code.view(-1)).view(code.shape)
    return bins.long() if out is None else out.copy_(bins)


def _lightness_from_offsets(o: torch.Tensor, dtype, scale: float = 1.0, shift: float = 0.0,
                            out: torch.Tensor | None = None) -> torch.Tensor:
    """Offset codes (..., 3, H, W) -> (..., 1, H, W) ``scale * L + shift``.

    Y is the sum of the three LUT contributions, then L = 116 f(Y) - 16 in one pass over Y: only
    the cube root is computed per pixel, so the values are those of :func:`rgb_to_lab` up to
    float rounding.
    """
    yc = _y_lut(o.device, dtype).index_select(0, o.view(-1)).view(o.shape)
    y = (yc[..., 0:1, :, :] + yc[..., 1:2, :, :]).add_(yc[..., 2:3, :, :])
    # L = 116 f - 16 with f = Y^(1/3) above 0.008856, else 7.787 Y + 16/116 (i.e. L = 903.292 Y)
    cube = y > 0.008856
    root = y.pow(1.0 / 3.0).mul_(116.0 * scale).add_(shift - 16.0 * scale)
    return torch.where(cube, root, y.mul_(116.0 * 7.787 * scale).add_(shift), out=root if out is None else out)


# On a CPU the batch goes through in tiles of whole images of about this many pixels: the int32 /
# float intermediates (~40 bytes a pixel) then stay a few MiB, which the allocator soon reuses,
# instead of fresh page-faulted buffers of hundreds of MiB for a large batch (1 thread, 224 px,
# batch 64: 1.4 -> 0.8 ms per image; 2^18 also settled faster than 2^19 or 2^20 after the first
# call). Not a Python loop per image: ~5 images a tile at 224 px, 256 at 32 px. On a GPU the whole
# batch goes at once.
_CPU_TILE_PIXELS = 1 << 18


def _uint8_pass(images: torch.Tensor, lightness: bool, bins: bool, scale: float = 1.0, shift: float = 0.0,
                dtype: torch.dtype = torch.float32):
    if images.dtype != torch.uint8 or images.dim() < 3 or images.shape[-3] != 3:
        raise ValueError(f"expected uint8 (..., 3, H, W) images, got {images.dtype} {tuple(images.shape)}")
    lead, (h, w) = images.shape[:-3], images.shape[-2:]
    flat = images.reshape(-1, 3, h, w)
    n = flat.shape[0]
    l_out = torch.empty(n, 1, h, w, dtype=dtype, device=images.device) if lightness else None
    b_out = torch.empty(n, h, w, dtype=torch.long, device=images.device) if bins else None
    step = max(n, 1) if images.device.type != "cpu" else max(1, _CPU_TILE_PIXELS // max(h * w, 1))
    for s in range(0, n, step):
        o = _offset_codes(flat[s:s + step])
        if lightness:
            _lightness_from_offsets(o, dtype, scale, shift, out=l_out[s:s + step])
        if bins:
            _bins_from_offsets(o, out=b_out[s:s + step])
    return (l_out.view(*lead, 1, h, w) if lightness else None), (b_out.view(*lead, h, w) if bins else None)


def lightness_and_bins(images: torch.Tensor, scale: float = 1.0, shift: float = 0.0,
                       dtype: torch.dtype = torch.float32):
    """uint8 (..., 3, H, W) -> (``scale * L + shift`` (..., 1, H, W), nearest bins (..., H, W) long).

    The colorization input and targets in one pass: L through a 3 x 256 LUT and one cube root,
    the bins through the per-colour table (:func:`rgb_bin_table`); on the images' device.
    """
    return _uint8_pass(images, True, True, scale, shift, dtype)


def nearest_bin_rgb(images: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> (..., H, W) long nearest-bin index of each pixel's colour (table lookup)."""
    return _uint8_pass(images, False, True)[1]


def nearest_bin(ab: torch.Tensor) -> torch.Tensor:
    """(..., 2) ab -> (...) long index of the nearest of the 313 bins (exact Euclidean 1-NN)."""
    lookup = bin_lookup(str(ab.device))
    return lookup.nearest(ab.reshape(-1, 2)).view(ab.shape[:-1])


def nearest_bins(ab: torch.Tensor, k: int):
    """(..., 2) ab -> (squared distances, indices), each (..., k), of the k nearest bins."""
    lookup = bin_lookup(str(ab.device))
    d, i = lookup.nearest_k(ab.reshape(-1, 2), k)
    return d.view(*ab.shape[:-1], k), i.view(*ab.shape[:-1], k)
