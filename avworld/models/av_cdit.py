"""AV-CDiT: the audio-visual conditional diffusion transformer that imagines the next step.

The Conditional DiT of Navigation World Models (Bar et al. 2025) lets the tokens of
the target step attend to one another (self-attention) and to the tokens of the m
context steps (cross-attention), so the cost grows linearly, not quadratically, with
m. AV-CDiT (Wang et al. 2025, arXiv 2512.00883) puts the patches of the video latent
and the frames of the audio latent in one target sequence, shares attention between
them and gives each modality its own *expert*: a feed-forward network with its own
adaLN-Zero modulation. Every block is modulated by one conditioning vector
c = embed(action) + embed(frame_skip) + embed(noise level) + embed(context noise level),
as in DiT's adaLN-Zero (Peebles & Xie 2023): all gates and output layers start at
zero, so each block starts as the identity and the net's outputs start at zero.

The net is f(x, noise level, cond) only; the flow process, its loss and the sampler
live in :mod:`avworld.models.flow`. Parameter names carry their modality
(``video_in``, ``video_out``, ``.video_expert.``, the same for audio; ``heads.`` for
reward and termination) so that a staged trainer can freeze by name; see
:func:`parameter_group`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avworld.models.precision import compiled

MODALITIES = ("video", "audio")
GROUPS = ("shared", "video", "audio", "heads")
"""The parameter groups of :meth:`AVCDiT.parameter_groups`."""


@dataclass
class AVCDiTConfig:
    video_latent: tuple[int, int, int] = (4, 8, 8)
    """(C, h, w) of one frame's latent."""
    audio_latent: tuple[int, int] = (16, 20)
    """(C_a, n) of one step's audio latent."""
    context: int = 4
    """m, the most context steps; fewer (the most recent ones) are accepted too."""
    patch: int = 2
    """Side of a square video latent patch; divides h and w."""
    audio_patch: int = 1
    """Audio latent frames per token; divides n."""
    dim: int = 256
    """Token width; a multiple of 4 (2-D sin-cos positions) and of ``heads``."""
    depth: int = 6
    heads: int = 4
    mlp_ratio: float = 4.0
    actions: int = 4
    """Size of the discrete action space."""
    max_frame_skip: int = 4
    """frame_skip runs from 1 (the next step) to this."""
    experts: bool = True
    """One feed-forward expert (with its own adaLN-Zero modulation) per modality; False: one shared FFN (the ablation)."""
    modalities: tuple[str, ...] = MODALITIES
    """Modelled modalities, a non-empty subset of ("video", "audio"); one of them alone is a unimodal baseline."""

    def __post_init__(self) -> None:
        self.video_latent, self.audio_latent = tuple(self.video_latent), tuple(self.audio_latent)
        self.modalities = tuple(self.modalities)
        if not self.modalities or len(set(self.modalities)) != len(self.modalities) or not set(self.modalities) <= set(MODALITIES):
            raise ValueError(f"AVCDiTConfig.modalities must be distinct names from {MODALITIES}, got {self.modalities}")
        self.modalities = tuple(m for m in MODALITIES if m in self.modalities)  # video tokens first
        if len(self.video_latent) != 3 or min(self.video_latent) < 1:
            raise ValueError(f"AVCDiTConfig.video_latent must be three positive ints (C, h, w), got {self.video_latent}")
        if len(self.audio_latent) != 2 or min(self.audio_latent) < 1:
            raise ValueError(f"AVCDiTConfig.audio_latent must be two positive ints (C_a, n), got {self.audio_latent}")
        for name in ("context", "patch", "audio_patch", "depth", "heads", "actions", "max_frame_skip"):
            if getattr(self, name) < 1:
                raise ValueError(f"AVCDiTConfig.{name} must be ≥ 1, got {getattr(self, name)}")
        _, h, w = self.video_latent
        if h % self.patch or w % self.patch:
            raise ValueError(f"AVCDiTConfig.patch must divide the video latent's h and w {(h, w)}, got {self.patch}")
        if self.audio_latent[1] % self.audio_patch:
            raise ValueError(f"AVCDiTConfig.audio_patch must divide the audio latent's n = {self.audio_latent[1]}, got {self.audio_patch}")
        if self.dim % 4 or self.dim % self.heads:
            raise ValueError(f"AVCDiTConfig.dim must be a multiple of 4 and of heads = {self.heads}, got {self.dim}")
        if self.mlp_ratio <= 0:
            raise ValueError(f"AVCDiTConfig.mlp_ratio must be > 0, got {self.mlp_ratio}")


# -- helpers -----------------------------------------------------------------------------------


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: x (B, N, D) · (1 + scale) + shift, with shift and scale (B, D)."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def sinusoidal(positions: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """(...,) → (..., dim): [cos(p ω_k), sin(p ω_k)] with ω_k = max_period^(−k / (dim / 2)) (Vaswani et al. 2017); dim even."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=positions.device) / half)
    angles = positions.float().unsqueeze(-1) * freqs
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


def grid_positions(rows: int, cols: int, dim: int) -> Tensor:
    """Fixed 2-D sin-cos embedding of a row-major token grid (rows · cols, dim): half the width codes the row, half the column."""
    r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    return torch.cat([sinusoidal(r.flatten(), dim // 2), sinusoidal(c.flatten(), dim // 2)], dim=-1)


def patchify(x: Tensor, patch: tuple[int, int]) -> Tensor:
    """(B, C, H, W) → (B, H/ph · W/pw, ph · pw · C), patches in row-major order."""
    (b, c, h, w), (ph, pw) = x.shape, patch
    x = x.reshape(b, c, h // ph, ph, w // pw, pw).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(b, (h // ph) * (w // pw), ph * pw * c)


def unpatchify(tokens: Tensor, shape: tuple[int, int, int], patch: tuple[int, int]) -> Tensor:
    """Inverse of :func:`patchify`: (B, H/ph · W/pw, ph · pw · C) → (B, C, H, W)."""
    (c, h, w), (ph, pw) = shape, patch
    x = tokens.reshape(-1, h // ph, w // pw, ph, pw, c).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(-1, c, h, w)


def parameter_group(name: str) -> str:
    """The group of a parameter name: "heads", "video" or "audio" (input, output layers and experts), else "shared"."""
    if name.startswith("heads."):
        return "heads"
    for m in MODALITIES:
        if name.startswith((f"{m}_in.", f"{m}_out.")) or f".{m}_expert." in name:
            return m
    return "shared"


# -- embedders ---------------------------------------------------------------------------------


class LatentEmbedder(nn.Module):
    """Latent (B, C, H, W) → tokens (B, H/ph · W/pw, D): linear patch projection + fixed 2-D sin-cos position + a learned modality vector.

    Audio latents (B, C_a, n) enter as 1 × n images with patches 1 × audio_patch.
    """

    def __init__(self, channels: int, size: tuple[int, int], patch: tuple[int, int], dim: int) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Linear(channels * patch[0] * patch[1], dim)
        self.modality = nn.Parameter(torch.zeros(dim))
        self.register_buffer("position", grid_positions(size[0] // patch[0], size[1] // patch[1], dim), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(patchify(x, self.patch)) + self.position + self.modality


class NoiseLevelEmbedder(nn.Module):
    """Noise level t ∈ [0, 1] (B,) → (B, D): sin-cos features of 1000 t, then an MLP (DiT's timestep embedder)."""

    def __init__(self, dim: int, frequencies: int = 256) -> None:
        super().__init__()
        self.frequencies = frequencies
        self.mlp = nn.Sequential(nn.Linear(frequencies, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(sinusoidal(1000.0 * t, self.frequencies).to(self.mlp[0].weight.dtype))


class ConditionEmbedder(nn.Module):
    """c (B, D) = embed(action) + embed(frame_skip) + embed(sigma) + embed(ctx_noise), the sigma-free terms embedded once per call."""

    def __init__(self, config: AVCDiTConfig) -> None:
        super().__init__()
        self.action = nn.Embedding(config.actions, config.dim)
        self.frame_skip = nn.Embedding(config.max_frame_skip, config.dim)
        self.sigma = NoiseLevelEmbedder(config.dim)
        self.ctx_noise = NoiseLevelEmbedder(config.dim)

    def fixed(self, action: Tensor, frame_skip: Tensor, ctx_noise: Tensor) -> tuple[Tensor, Tensor]:
        """The terms that do not change along a sampler run: (embed(action) + embed(frame_skip), embed(ctx_noise)), each (B, D)."""
        return self.action(action) + self.frame_skip(frame_skip - 1), self.ctx_noise(ctx_noise)

    def forward(self, fixed: tuple[Tensor, Tensor], sigma: Tensor) -> Tensor:
        """c (B, D) from :meth:`fixed`'s terms and sigma (B,), summed in the order of the class docstring."""
        moves, ctx_noise = fixed
        return moves + self.sigma(sigma) + ctx_noise


# -- block -------------------------------------------------------------------------------------


class Attention(nn.Module):
    """Multi-head attention of queries x (B, N, D) over keys and values from ``source`` (B, M, D); self-attention when source is x."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def keys_values(self, source: Tensor) -> tuple[Tensor, Tensor]:
        """source (B, M, D) → keys and values (B, H, M, D/H) each."""
        b, m, _ = source.shape
        k, v = self.kv(source).view(b, m, 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        return k, v

    def attend(self, x: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Queries from x (B, N, D) over keys and values (B, H, M, D/H) → (B, N, D), by PyTorch's fused SDPA kernels."""
        b, n, d = x.shape
        q = self.q(x).view(b, n, self.heads, -1).transpose(1, 2)  # (B, H, N, D/H)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))

    def forward(self, x: Tensor, source: Tensor) -> Tensor:
        return self.attend(x, *self.keys_values(source))


class Expert(nn.Module):
    """A feed-forward expert with its own adaLN-Zero modulation: x + gate · MLP(modulate(LN(x), shift, scale)), (B, N, D) → (B, N, D)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 3 * dim))
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale, gate = self.modulation(c).chunk(3, dim=-1)
        return x + gate.unsqueeze(1) * self.mlp(modulate(self.norm(x), shift, scale))


class AVCDiTBlock(nn.Module):
    """adaLN-Zero self-attention over the target tokens, cross-attention to the context tokens (both shared), then per-modality experts.

    The cross-attention's keys and values come in precomputed (``self.cross_attn.keys_values(context)``): the context is clean
    and the same at every sampler step, so an imagined step computes them once (:meth:`AVCDiT.velocity_fn`).
    """

    def __init__(self, config: AVCDiTConfig) -> None:
        super().__init__()
        dim = config.dim
        self.modalities = config.modalities
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.self_attn = Attention(dim, config.heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.cross_attn = Attention(dim, config.heads)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        names = [f"{m}_expert" for m in config.modalities] if config.experts else ["shared"]
        self.ffn = nn.ModuleDict({name: Expert(dim, round(dim * config.mlp_ratio)) for name in names})

    def forward(self, x: Tensor, kv: tuple[Tensor, Tensor], c: Tensor, split: list[int], modalities: tuple[str, ...]) -> Tensor:
        """x (B, N, D): target tokens, a run of ``split[i]`` tokens of ``modalities[i]`` each; kv: the context's cross-attention
        keys and values (B, H, M, D/H) each; c (B, D) → (B, N, D)."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c).chunk(6, dim=-1)
        h = modulate(self.norm1(x), shift1, scale1)
        x = x + gate1.unsqueeze(1) * self.self_attn(h, h)
        x = x + gate2.unsqueeze(1) * self.cross_attn.attend(modulate(self.norm2(x), shift2, scale2), *kv)
        if "shared" in self.ffn:
            return self.ffn["shared"](x, c)
        parts = x.split(split, dim=1)
        return torch.cat([self.ffn[f"{m}_expert"](part, c) for m, part in zip(modalities, parts, strict=True)], dim=1)


# -- final layer -------------------------------------------------------------------------------


class FinalLayer(nn.Module):
    """Tokens (B, N, D) → patches (B, N, out): adaLN-modulated LayerNorm, then a zero-initialised linear map (DiT)."""

    def __init__(self, dim: int, out: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, out)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


def scalar_head(dim: int) -> nn.Sequential:
    """Pooled tokens (B, D) → (B, 1)."""
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, 1))


# -- model -------------------------------------------------------------------------------------


class AVCDiT(nn.Module):
    """The next-step predictor f(x, sigma, cond); see the module docstring."""

    def __init__(self, config: AVCDiTConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.dim
        c, h, w = config.video_latent
        ca, n = config.audio_latent
        self.shapes = {"video": (c, h, w), "audio": (ca, 1, n)}  # each latent as an image (C, H, W)
        self.patches = {"video": (config.patch, config.patch), "audio": (1, config.audio_patch)}
        self.tokens = {m: (self.shapes[m][1] // self.patches[m][0]) * (self.shapes[m][2] // self.patches[m][1]) for m in MODALITIES}
        for m in config.modalities:
            (ch, hh, ww), (ph, pw) = self.shapes[m], self.patches[m]
            setattr(self, f"{m}_in", LatentEmbedder(ch, (hh, ww), (ph, pw), dim))
            setattr(self, f"{m}_out", FinalLayer(dim, ph * pw * ch))
        self.condition = ConditionEmbedder(config)
        self.context_time = nn.Parameter(torch.zeros(config.context, dim))  # per context step, the last row the most recent
        self.context_norm = nn.LayerNorm(dim)
        self.blocks = nn.ModuleList(AVCDiTBlock(config) for _ in range(config.depth))
        self.heads = nn.ModuleDict({"reward": scalar_head(dim), "termination": scalar_head(dim)})
        self.initialize_weights()
        self._compiled: tuple[Callable[..., Any], Callable[..., Any]] | None = None
        """Compiled (context, target) parts after :meth:`compile_velocity`."""

    def initialize_weights(self) -> None:
        """DiT's initialisation: Xavier-uniform linear maps, N(0, 0.02) embeddings, zero adaLN modulations and output layers."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.condition.action.weight, std=0.02)
        nn.init.normal_(self.condition.frame_skip.weight, std=0.02)
        for embedder in (self.condition.sigma, self.condition.ctx_noise):
            for layer in (embedder.mlp[0], embedder.mlp[2]):
                nn.init.normal_(layer.weight, std=0.02)
        nn.init.normal_(self.context_time, std=0.02)
        zero: list[nn.Linear] = []
        for m in self.config.modalities:
            nn.init.normal_(getattr(self, f"{m}_in").modality, std=0.02)
            final = getattr(self, f"{m}_out")
            zero += [final.modulation[-1], final.linear]
        for block in self.blocks:
            zero += [block.modulation[-1], *(expert.modulation[-1] for expert in block.ffn.values())]
        for layer in zero:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def parameter_groups(self) -> dict[str, list[str]]:
        """Parameter names by group ("shared", "video", "audio", "heads"); every parameter in exactly one."""
        groups: dict[str, list[str]] = {g: [] for g in GROUPS}
        for name, _ in self.named_parameters():
            groups[parameter_group(name)].append(name)
        return groups

    def active_modalities(self, *given_inputs: tuple[Tensor | None, Tensor | None]) -> tuple[str, ...]:
        """The modalities of a call: those whose (x, ctx) pair is given, a non-empty subset of the modelled ones (video first).

        Leaving a modelled modality out (its x and ctx None) runs the net on the other alone, as stage 1 of the
        staged training does with video.
        """
        given = tuple(m for m, (x, ctx) in zip(MODALITIES, given_inputs, strict=True) if x is not None or ctx is not None)
        extra = [m for m in given if m not in self.config.modalities]
        if extra:
            raise ValueError(f"this AVCDiT does not model {extra[0]}: x_{extra[0]} and ctx_{extra[0]} must be None")
        if not given:
            raise ValueError(f"give the target of at least one of the modelled modalities {self.config.modalities}")
        return given

    def _latent_check(self, name: str, x: Tensor, shape: tuple[int | str, ...]) -> None:
        """Raise naming ``name`` unless x has ``shape`` (a str entry: any size there)."""
        if x.dim() != len(shape) or any(isinstance(s, int) and s != n for s, n in zip(shape, x.shape, strict=True)):
            raise ValueError(f"{name} must be {shape}, got {tuple(x.shape)}")

    def velocity_fn(
        self, ctx_video: Tensor | None, ctx_audio: Tensor | None, action: Tensor, frame_skip: Tensor, ctx_noise: Tensor
    ) -> Callable[[dict[str, Tensor], Tensor], dict[str, Tensor]]:
        """The net with its clean context fixed: ``f(x, sigma)`` returns exactly what :meth:`forward` returns.

        Everything that does not depend on the noisy target is computed here, once: the context's tokens, their
        normalisation, every block's cross-attention keys and values and the action, frame-skip and context-noise
        embeddings. A sampler then pays only for the target tokens at each of its steps.

        Args: ctx_video, ctx_audio, action, frame_skip, ctx_noise as in :meth:`forward`; the modalities whose context is given are
        those of the call.

        Returns:
            f(x, sigma): x {modality: (B, *latent)} the noisy targets of exactly those modalities, sigma (B,) → the outputs of
            :meth:`forward`.
        """
        batch = action.shape[0]
        contexts = {"video": ctx_video, "audio": ctx_audio}
        active = self.active_modalities(*((None, contexts[m]) for m in MODALITIES))
        tokens = []
        for m in active:
            ctx, latent = contexts[m], self.latent(m)
            self._latent_check(f"ctx_{m}", ctx, (batch, "m", *latent))
            if not 1 <= ctx.shape[1] <= self.config.context:
                raise ValueError(f"ctx_{m} must hold 1 to {self.config.context} context steps, got {ctx.shape[1]}")
            tokens.append(getattr(self, f"{m}_in")(ctx.reshape(-1, *self.shapes[m])).unflatten(0, ctx.shape[:2]))  # (B, m, N_m, D)
        steps = [t.shape[1] for t in tokens]
        if len(set(steps)) > 1:
            raise ValueError(f"ctx_video and ctx_audio must hold the same number of context steps, got {steps}")
        context_fn, target_fn = self._compiled or (self._context, self._target)
        kv, fixed = context_fn(tokens, action, frame_skip, ctx_noise)

        def f(x: dict[str, Tensor], sigma: Tensor) -> dict[str, Tensor]:
            if set(x) != set(active):
                raise ValueError(f"x must hold the targets of the modalities whose context is given, {active}; got {tuple(x)}")
            for m in active:
                self._latent_check(f"x_{m}", x[m], (batch, *self.latent(m)))
            return target_fn(x, sigma, kv, fixed)

        return f

    def _context(
        self, tokens: list[Tensor], action: Tensor, frame_skip: Tensor, ctx_noise: Tensor
    ) -> tuple[list[tuple[Tensor, Tensor]], tuple[Tensor, Tensor]]:
        """The sigma-free part of a pass: context tokens [(B, m, N_m, D)] → every block's cross-attention keys and values, and
        the conditioning terms of :meth:`ConditionEmbedder.fixed`."""
        context = torch.cat(tokens, dim=2) + self.context_time[-tokens[0].shape[1] :, None]  # (B, m, N, D)
        context = self.context_norm(context.flatten(1, 2))  # (B, m · N, D)
        kv = [block.cross_attn.keys_values(context) for block in self.blocks]
        return kv, self.condition.fixed(action, frame_skip, ctx_noise)

    def _target(
        self, x: dict[str, Tensor], sigma: Tensor, kv: list[tuple[Tensor, Tensor]], fixed: tuple[Tensor, Tensor]
    ) -> dict[str, Tensor]:
        """One evaluation on the noisy targets x {modality: (B, *latent)} at sigma (B,) given :meth:`_context`'s results."""
        active = tuple(m for m in MODALITIES if m in x)
        batch = sigma.shape[0]
        split = [self.tokens[m] for m in active]
        h = torch.cat([getattr(self, f"{m}_in")(x[m].reshape(batch, *self.shapes[m])) for m in active], dim=1)  # (B, N, D)
        c = self.condition(fixed, sigma)  # (B, D)
        for block, block_kv in zip(self.blocks, kv, strict=True):
            h = block(h, block_kv, c, split, active)
        out: dict[str, Tensor] = {}
        for m, part in zip(active, h.split(split, dim=1), strict=True):
            image = unpatchify(getattr(self, f"{m}_out")(part, c), self.shapes[m], self.patches[m])  # (B, C, H, W)
            out[m] = image if m == "video" else image.squeeze(2)
        pooled = h.mean(dim=1)  # (B, D)
        out["reward"] = self.heads["reward"](pooled).squeeze(-1)
        out["termination_logit"] = self.heads["termination"](pooled).squeeze(-1)
        return out

    def compile_velocity(self, mode: str | None = "reduce-overhead") -> None:
        """``torch.compile`` both parts of :meth:`velocity_fn` (and so of every sampler built on it, and of ``forward``), for
        inference.

        The target part, evaluated at every sampler step, compiles in ``mode``: "reduce-overhead" replays each fixed-shape call
        as a CUDA graph, so a sampler step at batch 1 is bound by the GPU, not by kernel launches; its outputs are copied out
        of the graph's buffers, which the next replay overwrites. The context part runs once per imagined step and its keys
        and values must outlive later calls: it compiles without CUDA graphs. A part that fails to compile warns and runs
        eagerly (:func:`compiled`).
        """
        target = compiled(self._target, mode, "AV-CDiT velocity")
        graphs = mode in ("reduce-overhead", "max-autotune")

        def target_out(*args: Any) -> dict[str, Tensor]:
            out = target(*args)
            return {k: v.clone() for k, v in out.items()} if graphs else out

        self._compiled = compiled(self._context, None, "AV-CDiT context"), target_out

    def latent(self, m: str) -> tuple[int, ...]:
        """The latent shape of one step of modality m: (C, h, w) for video, (C_a, n) for audio."""
        return self.config.video_latent if m == "video" else self.config.audio_latent

    def forward(
        self,
        x_video: Tensor | None,
        x_audio: Tensor | None,
        sigma: Tensor,
        ctx_video: Tensor | None,
        ctx_audio: Tensor | None,
        action: Tensor,
        frame_skip: Tensor,
        ctx_noise: Tensor,
    ) -> dict[str, Tensor]:
        """Predict the target step's outputs (for :mod:`avworld.models.flow`, the velocities).

        Args:
            x_video: (B, C, h, w) noisy target video latent; None when video is not modelled or left out of this call.
            x_audio: (B, C_a, n) noisy target audio latent; None likewise (see :meth:`active_modalities`).
            sigma: (B,) noise level (flow time) of the targets, in [0, 1].
            ctx_video: (B, m, C, h, w) context video latents, oldest first, m ≤ config.context; None without video.
            ctx_audio: (B, m, C_a, n) context audio latents, the same m steps; None without audio.
            action: (B,) int64 in [0, actions): the action taken after the last context step.
            frame_skip: (B,) int64 in [1, max_frame_skip]: how many steps after the last context step the target lies.
            ctx_noise: (B,) noise level the context latents were augmented with, in [0, 1].

        Returns:
            "video" (B, C, h, w) and/or "audio" (B, C_a, n), one per modality of the call; "reward" (B,); "termination_logit" (B,).
        """
        inputs = {"video": (x_video, ctx_video), "audio": (x_audio, ctx_audio)}
        active = self.active_modalities(inputs["video"], inputs["audio"])
        for m in active:
            if any(t is None for t in inputs[m]):
                raise ValueError(f"x_{m} and ctx_{m} must be given together")
        x = {m: inputs[m][0] for m in active}
        return self.velocity_fn(ctx_video, ctx_audio, action, frame_skip, ctx_noise)(x, sigma)


def count_parameters(config: AVCDiTConfig) -> int:
    """Trainable parameters of an AVCDiT of ``config`` (built on the meta device: no memory, no init cost)."""
    with torch.device("meta"):
        return sum(p.numel() for p in AVCDiT(config).parameters())


def forward_flops(config: AVCDiTConfig, context_steps: int | None = None, modalities: tuple[str, ...] | None = None) -> dict[str, int]:
    """Matrix-multiply FLOPs of one sample's pass (a multiply-add counts 2; norms, activations and sums are left out).

    "context": the part :meth:`AVCDiT.velocity_fn` computes once (context tokens, every block's cross-attention keys and values,
    the context-noise embedding); "target": one evaluation of its closure. A forward pass costs context + target, an imagined
    step of k sampler steps context + k · target, a training step about 3 · (context + target) (the backward pass twice the
    forward, as in Kaplan et al. 2020).
    """
    m = config.context if context_steps is None else context_steps
    active = config.modalities if modalities is None else modalities
    d, hidden = config.dim, round(config.dim * config.mlp_ratio)
    patch = {"video": config.patch**2 * config.video_latent[0], "audio": config.audio_patch * config.audio_latent[0]}
    tokens = {"video": (config.video_latent[1] // config.patch) * (config.video_latent[2] // config.patch)}
    tokens["audio"] = config.audio_latent[1] // config.audio_patch
    n = sum(tokens[k] for k in active)  # target tokens
    noise_level = 256 * d + d * d  # NoiseLevelEmbedder's MLP
    context = sum(m * tokens[k] * patch[k] * d for k in active) + config.depth * m * n * 2 * d * d + noise_level
    experts = active if config.experts else ("shared",)
    block = 6 * d * d + n * 3 * d * d + 2 * n * n * d + n * d * d  # modulation, self-attention q/k/v, q·k and a·v, output
    block += 2 * n * d * d + 2 * n * m * n * d  # cross-attention: q and output, q·k and a·v over the m · N context tokens
    block += len(experts) * 3 * d * d + n * 2 * d * hidden  # the experts' modulations and MLPs (each token through one)
    target = sum(tokens[k] * patch[k] * d + 2 * d * d + tokens[k] * d * patch[k] for k in active)  # embedding, final layers
    target += noise_level + config.depth * block + 2 * (d * d + d)  # sigma embedding, blocks, reward and termination heads
    return {"context": 2 * context, "target": 2 * target}


AV_CDIT_PRESETS: dict[str, AVCDiTConfig] = {
    "tiny": AVCDiTConfig(dim=64, depth=2, heads=4),
    "small": AVCDiTConfig(dim=256, depth=6, heads=4),
    "base": AVCDiTConfig(dim=512, depth=12, heads=8),
    "large": AVCDiTConfig(dim=768, depth=24, heads=12),
}
