"""The video tokenizer: a small convolutional KL autoencoder of single RGB frames.

It follows the latent-diffusion autoencoder (Rombach et al. 2022, "KL-f8"): each
resolution level is residual blocks then a 2x downsampling; the encoder outputs a
diagonal Gaussian posterior, the decoder mirrors the encoder, and a small KL weight
keeps the latents near a standard normal without blurring the frames. Three levels
code a 64×64 frame as a 4×8×8 latent. (No perceptual or adversarial loss: their
pretrained networks cannot be downloaded here.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avworld.models.blocks import Downsample2d, ResBlock2d, Upsample2d, group_norm
from avworld.models.losses import kl_divergence


@dataclass
class VideoVAEConfig:
    image_size: int = 64
    """H = W of the frames; divisible by 2 ** len(channels)."""
    channels: tuple[int, ...] = (32, 64, 128)
    """Width of each resolution level; each level halves H and W (three levels: 8x)."""
    blocks_per_level: int = 1
    latent_channels: int = 4
    kl_weight: float = 1e-6
    """Weight of the KL term, which (like the reconstruction terms) is a mean per element."""

    def __post_init__(self) -> None:
        self.channels = tuple(self.channels)
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"VideoVAEConfig.channels must be a non-empty tuple of positive widths, got {self.channels}")
        for name in ("blocks_per_level", "latent_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"VideoVAEConfig.{name} must be ≥ 1, got {getattr(self, name)}")
        factor = 2 ** len(self.channels)
        if self.image_size < factor or self.image_size % factor:
            raise ValueError(
                f"VideoVAEConfig.image_size must be a positive multiple of 2 ** len(channels) = {factor}, got {self.image_size}"
            )


def rgb_to_tensor(rgb: Tensor) -> Tensor:
    """uint8 frames (..., H, W, 3) → float (..., 3, H, W) in [-1, 1]."""
    if rgb.dtype != torch.uint8:
        raise TypeError(f"rgb frames must be uint8, got {rgb.dtype}")
    return rgb.movedim(-1, -3).float() / 127.5 - 1.0


def tensor_to_rgb(x: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_tensor`: float (..., 3, H, W), clamped to [-1, 1] → uint8 (..., H, W, 3)."""
    return ((x.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8).movedim(-3, -1)


class Encoder(nn.Module):
    """(B, 3, H, W) → (B, 2 · latent_channels, H / d, W / d): the posterior's mean and log-variance, stacked."""

    def __init__(self, config: VideoVAEConfig) -> None:
        super().__init__()
        widths = config.channels
        layers: list[nn.Module] = [nn.Conv2d(3, widths[0], 3, padding=1)]
        cin = widths[0]
        for width in widths:
            for _ in range(config.blocks_per_level):
                layers.append(ResBlock2d(cin, width))
                cin = width
            layers.append(Downsample2d(width))
        layers += [ResBlock2d(cin, cin), group_norm(cin), nn.SiLU(), nn.Conv2d(cin, 2 * config.latent_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Decoder(nn.Module):
    """(B, latent_channels, h, w) → (B, 3, h · d, w · d), the encoder's mirror."""

    def __init__(self, config: VideoVAEConfig) -> None:
        super().__init__()
        widths = config.channels
        cin = widths[-1]
        layers: list[nn.Module] = [nn.Conv2d(config.latent_channels, cin, 3, padding=1), ResBlock2d(cin, cin)]
        for width in reversed(widths):
            layers.append(Upsample2d(cin))
            for _ in range(config.blocks_per_level):
                layers.append(ResBlock2d(cin, width))
                cin = width
        layers += [group_norm(cin), nn.SiLU(), nn.Conv2d(cin, 3, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class VideoVAE(nn.Module):
    """KL autoencoder of RGB frames; see the module docstring."""

    def __init__(self, config: VideoVAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    @property
    def downsample(self) -> int:
        """Spatial reduction factor d = 2 ** levels."""
        return 2 ** len(self.config.channels)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of one frame's latent at ``config.image_size``."""
        side = self.config.image_size // self.downsample
        return (self.config.latent_channels, side, side)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior of frames x (B, 3, H, W) in [-1, 1] (H, W divisible by d): (mean, logvar), each (B, C, H/d, W/d)."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: Tensor) -> Tensor:
        """Latents (B, C, h, w) → frames (B, 3, h · d, w · d), unbounded floats (≈ [-1, 1]; callers clamp)."""
        return self.decoder(z)

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Training loss on ``batch["rgb"]``: uint8 (B, H, W, 3) or (B, T, H, W, 3), T flattened into the batch.

        The frames are rebuilt from a reparameterised posterior sample (the mean in eval
        mode); loss = L1 + MSE + kl_weight · KL, all means per element, on [-1, 1] pixels.
        Logs: ``loss``, ``l1``, ``mse``, ``kl`` and ``psnr`` (dB, on [0, 1] pixels, batch mean), detached 0-d tensors (read
        as numbers only when logged: each read waits for the device).
        """
        rgb = batch["rgb"]
        size = self.config.image_size
        if rgb.shape[-3:] != (size, size, 3):
            raise ValueError(f"rgb frames must be ({size}, {size}, 3) for this VideoVAE, got {tuple(rgb.shape[-3:])}")
        x = rgb_to_tensor(rgb.reshape(-1, size, size, 3))  # (B, 3, H, W)
        mean, logvar = (t.float() for t in self.encode(x))  # (B, C, h, w) each; float32 also under bf16 autocast
        z = mean + (0.5 * logvar).exp() * torch.randn_like(mean) if self.training else mean
        y = self.decode(z).float()  # (B, 3, H, W)
        with torch.autocast(x.device.type, enabled=False):  # the losses in float32
            l1 = (y - x).abs().mean()
            mse = F.mse_loss(y, x)
            kl = kl_divergence(mean, logvar)
            loss = l1 + mse + self.config.kl_weight * kl
        with torch.no_grad():
            per_item = (y.clamp(-1.0, 1.0) - x).square().mean(dim=(1, 2, 3)) / 4.0  # MSE on [0, 1]
            psnr = (-10.0 * torch.log10(per_item.clamp(min=1e-10))).mean()
        logs = {"loss": loss, "l1": l1, "mse": mse, "kl": kl, "psnr": psnr}
        return loss, {k: v.detach() for k, v in logs.items()}


VIDEO_VAE_PRESETS: dict[str, VideoVAEConfig] = {
    "tiny": VideoVAEConfig(channels=(8, 16, 32), latent_channels=4),
    "small": VideoVAEConfig(channels=(32, 64, 128), latent_channels=8),
    "base": VideoVAEConfig(channels=(64, 128, 256), blocks_per_level=2, latent_channels=8),
}
