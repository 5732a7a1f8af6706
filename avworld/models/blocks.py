"""Convolutional layers shared by the tokenizers: residual blocks and resampling, 2-D for frames, 1-D for waveforms."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def group_norm(channels: int, max_groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with the most groups (≤ ``max_groups``) that divide ``channels``, so tiny widths work too."""
    groups = max(g for g in range(1, min(max_groups, channels) + 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels, eps=1e-6)


class ResBlock2d(nn.Module):
    """(GroupNorm → SiLU → Conv3x3) × 2 plus a skip (1x1 conv when the width changes), as in the latent-diffusion VAE."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            group_norm(cin),
            nn.SiLU(),
            nn.Conv2d(cin, cout, 3, padding=1),
            group_norm(cout),
            nn.SiLU(),
            nn.Conv2d(cout, cout, 3, padding=1),
        )
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, cin, H, W) → (B, cout, H, W)."""
        return self.skip(x) + self.body(x)


class Downsample2d(nn.Module):
    """Halve H and W with a stride-2 3x3 conv (H and W even)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) → (B, C, H/2, W/2)."""
        return self.conv(x)


class Upsample2d(nn.Module):
    """Double H and W: nearest-neighbour upsampling then a 3x3 conv (no checkerboard artefacts)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) → (B, C, 2H, 2W)."""
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ResBlock1d(nn.Module):
    """SoundStream's residual unit: ELU → dilated Conv(k=7) → ELU → Conv(k=1), plus a skip (Zeghidour et al. 2021).

    No normalisation layer: a norm over time would erase the level differences between
    channels that carry the interaural level difference.
    """

    def __init__(self, cin: int, cout: int, dilation: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ELU(),
            nn.Conv1d(cin, cout, 7, dilation=dilation, padding=3 * dilation),
            nn.ELU(),
            nn.Conv1d(cout, cout, 1),
        )
        self.skip = nn.Identity() if cin == cout else nn.Conv1d(cin, cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, cin, N) → (B, cout, N)."""
        return self.skip(x) + self.body(x)


class Downsample1d(nn.Module):
    """Divide the length by ``stride`` exactly (N divisible by it): ELU, then a strided conv of kernel stride + 2·(stride // 2)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        pad = stride // 2
        self.conv = nn.Conv1d(cin, cout, stride + 2 * pad, stride=stride, padding=pad)

    def forward(self, x: Tensor) -> Tensor:
        """(B, cin, N) → (B, cout, N / stride)."""
        return self.conv(F.elu(x))


class Upsample1d(nn.Module):
    """Multiply the length by ``stride`` exactly: the transposed twin of :class:`Downsample1d`."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        pad = stride // 2
        self.conv = nn.ConvTranspose1d(cin, cout, stride + 2 * pad, stride=stride, padding=pad)

    def forward(self, x: Tensor) -> Tensor:
        """(B, cin, n) → (B, cout, n · stride)."""
        return self.conv(F.elu(x))
