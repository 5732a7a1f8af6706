"""Tokenizer models (video VAE, audio codec), their losses and the reconstruction metrics: shapes, known answers, learning."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from avworld.eval.metrics import ild_error_db, log_spectrogram, lsd, psnr, spectral_ssim, ssim
from avworld.models.audio_codec import AUDIO_CODEC_PRESETS, AudioCodec, AudioCodecConfig
from avworld.models.losses import ild_db, ild_loss, kl_divergence, multi_resolution_stft_loss
from avworld.models.video_vae import VIDEO_VAE_PRESETS, VideoVAE, VideoVAEConfig, rgb_to_tensor, tensor_to_rgb

SAMPLE_RATE = 16000


def _detached_scalar(v: object) -> bool:
    """A training log as the contract gives it: a detached 0-d tensor (read as a number only when the trainer logs)."""
    return isinstance(v, torch.Tensor) and v.shape == () and not v.requires_grad and bool(torch.isfinite(v))


def smooth_frames(b: int, size: int, seed: int = 0) -> torch.Tensor:
    """uint8 (b, size, size, 3): a few low-frequency plane waves per channel, random phases."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    freq = torch.randint(1, 4, (b, 3, 2, 2), generator=g).float()  # (b, rgb, wave, xy)
    phase = 2 * math.pi * torch.rand(b, 3, 2, 1, 1, generator=g)
    waves = torch.sin(2 * math.pi * (freq[..., 0, None, None] * xx + freq[..., 1, None, None] * yy) + phase)  # (b, 3, 2, H, W)
    img = 0.5 + 0.25 * waves.sum(dim=2)
    return (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def binaural_tones(b: int, n: int, seed: int = 0) -> torch.Tensor:
    """float (b, 2, n): a harmonic tone plus a little noise, quieter in the right ear, levels from 1e-3 to 0.1."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / SAMPLE_RATE
    f0 = 200 + 600 * torch.rand(b, 1, generator=g)
    tone = sum(torch.sin(2 * math.pi * k * f0 * t) / k for k in (1, 2, 3))  # (b, n)
    tone = tone + 0.05 * torch.randn(b, n, generator=g)
    level = 10 ** (-3 + 2 * torch.rand(b, 1, 1, generator=g))
    ears = torch.stack([torch.ones(b), 0.2 + 0.6 * torch.rand(b, generator=g)], dim=1)[..., None]  # (b, 2, 1)
    return (level * ears * tone[:, None]).float()


# -- metrics -----------------------------------------------------------------------------------


def test_psnr_known_answers() -> None:
    x = smooth_frames(2, 32)
    assert torch.isinf(psnr(x, x)).all()
    target = torch.full((2, 16, 16, 3), 100, dtype=torch.uint8)
    pred = target + 10  # MSE (10 / 255)² on [0, 1]
    assert torch.allclose(psnr(pred, target), torch.full((2,), 20 * math.log10(25.5)), atol=1e-4)
    assert torch.allclose(psnr(torch.full((1, 8, 8, 3), 0.6), torch.full((1, 8, 8, 3), 0.5)), torch.tensor([20.0]), atol=1e-4)


def test_ssim_is_one_for_identical_frames_and_falls_with_noise() -> None:
    torch.manual_seed(0)
    x = smooth_frames(3, 32)
    assert torch.allclose(ssim(x, x), torch.ones(3), atol=1e-5)
    scores = []
    for sigma in (5.0, 20.0, 60.0):
        noisy = (x.float() + sigma * torch.randn(x.shape)).clamp(0, 255).round().to(torch.uint8)
        scores.append(ssim(noisy, x))
    assert (scores[0] < 1).all() and (scores[1] < scores[0]).all() and (scores[2] < scores[1]).all()
    with pytest.raises(ValueError, match="11x11"):
        ssim(x[:, :8, :8], x[:, :8, :8])


def test_audio_metrics_known_answers() -> None:
    torch.manual_seed(0)
    audio = 0.1 * torch.randn(3, 1, 4000) * torch.tensor([1.0, 0.5])[:, None]  # (3, 2, N), left louder by 6.02 dB
    assert log_spectrogram(audio).shape == (3, 2, 129, 32)
    assert torch.allclose(lsd(audio, audio), torch.zeros(3))
    assert torch.allclose(lsd(2 * audio, audio), torch.full((3,), 20 * math.log10(2)), atol=1e-3)
    assert torch.allclose(spectral_ssim(audio, audio), torch.ones(3), atol=1e-5)
    assert (spectral_ssim(audio + 0.05 * torch.randn_like(audio), audio) < 0.95).all()
    ild = ild_db(audio)
    assert torch.allclose(ild, torch.full((3,), 20 * math.log10(2)), atol=1e-4)  # sign: left louder → positive
    assert torch.allclose(ild_db(audio.flip(1)), -ild, atol=1e-5)
    assert torch.allclose(ild_error_db(audio.flip(1), audio), 2 * ild.abs(), atol=1e-4)
    assert torch.allclose(ild_error_db(audio, audio), torch.zeros(3))


# -- losses ------------------------------------------------------------------------------------


def test_losses_vanish_at_the_target_and_ild_loss_ignores_a_common_gain() -> None:
    audio = binaural_tones(2, 2400)
    assert float(multi_resolution_stft_loss(audio, audio, (256, 512))) == pytest.approx(0.0, abs=1e-6)
    assert float(multi_resolution_stft_loss(0.5 * audio, audio, (256, 512))) > 0.1
    assert float(ild_loss(audio, audio)) == pytest.approx(0.0, abs=1e-6)
    assert float(ild_loss(30 * audio, audio)) == pytest.approx(0.0, abs=1e-4)
    assert float(ild_loss(audio.flip(1), audio)) > 1.0
    assert float(kl_divergence(torch.zeros(2, 4), torch.zeros(2, 4))) == 0.0
    assert float(kl_divergence(torch.ones(2, 4), torch.zeros(2, 4))) == pytest.approx(0.5)


# -- video VAE ---------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [64, 128])
def test_video_vae_shapes(size: int) -> None:
    torch.manual_seed(0)
    model = VideoVAE(dataclasses.replace(VIDEO_VAE_PRESETS["tiny"], image_size=size))
    rgb = smooth_frames(2, size)
    x = rgb_to_tensor(rgb)
    assert x.shape == (2, 3, size, size) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(tensor_to_rgb(x), rgb)
    mean, logvar = model.encode(x)
    assert model.downsample == 8 and mean.shape == logvar.shape == (2, *model.latent_shape) == (2, 4, size // 8, size // 8)
    assert model.decode(mean).shape == (2, 3, size, size)
    loss, logs = model({"rgb": rgb[None].expand(3, -1, -1, -1, -1)})  # (B, T, H, W, 3)
    assert loss.ndim == 0 and set(logs) >= {"loss", "l1", "kl", "psnr"} and all(_detached_scalar(v) for v in logs.values())


def test_video_vae_forward_is_deterministic_under_a_seed() -> None:
    batch = {"rgb": smooth_frames(2, 64)}
    torch.manual_seed(1)
    model = VideoVAE(VIDEO_VAE_PRESETS["tiny"])
    torch.manual_seed(2)
    first = model(batch)[0]
    torch.manual_seed(2)
    assert torch.equal(model(batch)[0], first)


def test_video_vae_learns_one_batch() -> None:
    torch.manual_seed(0)
    model = VideoVAE(VIDEO_VAE_PRESETS["tiny"])
    batch = {"rgb": smooth_frames(8, 64)}
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    first, _ = model(batch)
    for _ in range(30):
        loss, logs = model(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    last, logs = model(batch)
    assert float(last.detach()) < 0.5 * float(first.detach()) and logs["psnr"] > 14


# -- audio codec -------------------------------------------------------------------------------


@pytest.mark.parametrize(("samples", "frames"), [(4000, 20), (2400, 12)])
def test_audio_codec_shapes_and_gain_channel(samples: int, frames: int) -> None:
    torch.manual_seed(0)
    model = AudioCodec(dataclasses.replace(AUDIO_CODEC_PRESETS["tiny"], samples=samples))
    audio = binaural_tones(2, samples)
    z = model.encode(audio)
    assert model.latent_frames == frames and z.shape == (2, model.config.latent_channels, frames)
    assert model.decode(z).shape == audio.shape
    # Channel 0 codes the log10 gain; the rest does not see the level (up to GAIN_EPS), so 10x louder decodes 10x louder.
    z10 = model.encode(10 * audio)
    assert torch.allclose(z10[:, 0], z[:, 0] + 1, atol=1e-3) and torch.allclose(z10[:, 1:], z[:, 1:], rtol=1e-2, atol=1e-3)
    assert torch.allclose(model.decode(z10), 10 * model.decode(z), rtol=1e-2, atol=1e-5)
    loss, logs = model({"audio": audio[:, None].expand(-1, 3, -1, -1)})  # (B, T, 2, N)
    assert loss.ndim == 0 and set(logs) >= {"loss", "stft", "ild_db"} and all(_detached_scalar(v) for v in logs.values())


def test_audio_codec_learns_one_batch() -> None:
    """Both codecs learn; the one with band channels keeps the level difference between the ears from its first step,
    which the plain one does not learn in these steps (as the shipped codec of 2026-12-04 did not, docs/results.md)."""
    batch = {"audio": binaural_tones(4, 2400)}
    ild = {}
    for bands in ((), (1500.0, 6000.0)):
        torch.manual_seed(0)
        config = dataclasses.replace(AUDIO_CODEC_PRESETS["tiny"], samples=2400, latent_channels=8 + 3 * bool(bands), ild_bands_hz=bands)
        model = AudioCodec(config)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        first, first_logs = model(batch)
        for _ in range(30):
            loss, _ = model(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
        last, last_logs = model(batch)
        assert float(last.detach()) < 0.7 * float(first.detach())
        ild[bands] = (float(first_logs["ild_db"]), float(last_logs["ild_db"]))
    assert ild[()][0] > 2.0 and ild[(1500.0, 6000.0)][0] < 0.1
    assert ild[(1500.0, 6000.0)][1] < 0.25 * ild[()][1]


def band_noise(b: int, n: int, ild_db: torch.Tensor, edges: tuple[float, ...], seed: int = 0) -> torch.Tensor:
    """float (b, 2, n): white noise in both ears (independent), each band of ``edges`` (Hz) louder in the left ear by
    ild_db (b, bands) dB, at 0.05 RMS."""
    g = torch.Generator().manual_seed(seed)
    spec = torch.fft.rfft(torch.randn(b, 2, n, generator=g), dim=-1)
    band = torch.bucketize(torch.fft.rfftfreq(n, 1 / SAMPLE_RATE), torch.tensor(edges), right=True)
    half = (10 ** (ild_db / 40))[..., band]  # (b, F): √ of the energy ratio, split between the ears
    x = torch.fft.irfft(spec * torch.stack([half, 1 / half], dim=1), n=n, dim=-1)
    return 0.05 * x / x.square().mean(dim=(1, 2), keepdim=True).sqrt()


def test_audio_codec_carries_band_level_differences_through_an_untrained_network() -> None:
    """The latent's band channels hold each band's level difference, and decoding puts them back: so even an untrained
    codec decodes the direction a sound comes from, and changing only those channels moves it."""
    from avworld.eval.metrics import band_ild_db

    torch.manual_seed(0)
    config = dataclasses.replace(AUDIO_CODEC_PRESETS["tiny"], latent_channels=11, ild_bands_hz=(1000.0, 3000.0))
    model = AudioCodec(config)
    ild = torch.tensor([[0.0, 6.0, -9.0], [3.0, -4.0, 12.0]])  # (b, bands) dB
    audio = band_noise(2, 4000, ild, config.ild_bands_hz)
    bands = [(0.0, 1000.0), (1000.0, 3000.0), (3000.0, 8001.0)]  # the last with the Nyquist bin, as the codec's band
    measured = torch.stack([band_ild_db(audio, SAMPLE_RATE, band) for band in bands], dim=1)
    with torch.no_grad():
        z = model.encode(audio)
        assert z.shape == (2, 11, 20) and config.ild_channels == 3 and config.network_channels == 7
        assert torch.allclose(z[:, 1:4], measured[..., None].float().expand(-1, -1, 20), atol=0.05)
        decoded = torch.stack([band_ild_db(model.decode(z), SAMPLE_RATE, band) for band in bands], dim=1)
        assert (decoded - ild).abs().max() < 0.5
        z[:, 1:4] = -z[:, 1:4]  # the mirror image: every band now louder on the other side
        mirrored = torch.stack([band_ild_db(model.decode(z), SAMPLE_RATE, band) for band in bands], dim=1)
        assert (mirrored + ild).abs().max() < 0.5


def test_audio_codec_config_refuses_bad_bands() -> None:
    with pytest.raises(ValueError, match="ild_bands_hz"):
        AudioCodecConfig(ild_bands_hz=(3000.0, 1500.0))
    with pytest.raises(ValueError, match="ild_bands_hz"):
        AudioCodecConfig(ild_bands_hz=(1500.0, 9000.0), sample_rate=16000)
    with pytest.raises(ValueError, match="latent_channels must be ≥ 8"):
        AudioCodecConfig(latent_channels=7, ild_bands_hz=(375.0, 750.0, 1500.0, 3000.0, 6000.0))
    # without bands (the config's default, as codecs trained before band channels): gain + the network's channels
    assert AudioCodecConfig().ild_channels == 0 and AudioCodec(AudioCodecConfig()).encode(binaural_tones(1, 4000)).shape == (1, 16, 20)


def test_audio_codec_forward_is_deterministic() -> None:
    batch = {"audio": binaural_tones(2, 4000)}
    torch.manual_seed(1)
    a = AudioCodec(AUDIO_CODEC_PRESETS["tiny"])
    torch.manual_seed(1)
    b = AudioCodec(AUDIO_CODEC_PRESETS["tiny"])
    assert torch.equal(a(batch)[0], b(batch)[0])


# -- configs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: VideoVAEConfig(image_size=60), "image_size"),
        (lambda: VideoVAEConfig(channels=()), "channels"),
        (lambda: VideoVAEConfig(latent_channels=0), "latent_channels"),
        (lambda: AudioCodecConfig(samples=4100), "samples"),
        (lambda: AudioCodecConfig(strides=(2, 4, 5)), "strides"),
        (lambda: AudioCodecConfig(latent_channels=1), "latent_channels"),
        (lambda: AudioCodecConfig(samples=800, stft_sizes=(256, 1024)), "stft_sizes"),
    ],
)
def test_bad_config_sizes_are_refused_naming_the_field(make, field: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=field):
        make()


def test_every_preset_builds() -> None:
    shapes = {name: VideoVAE(config).latent_shape for name, config in VIDEO_VAE_PRESETS.items()}
    assert shapes == {"tiny": (4, 8, 8), "small": (8, 8, 8), "base": (8, 8, 8)}  # 8x down; tiny keeps the world model's job small
    for config in AUDIO_CODEC_PRESETS.values():
        assert AudioCodec(config).latent_frames == 20
