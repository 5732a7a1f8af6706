"""Rectified flow matching for AV-CDiT: the training wrapper that owns the loss, and the Euler sampler.

Convention (Lipman et al. 2023, "Flow Matching for Generative Modeling"; Liu et al. 2023;
SD3, Esser et al. 2024): time t ∈ [0, 1] runs from data to noise on a straight path

    x_t = (1 − t) · x_0 + t · ε,   ε ~ N(0, I),

and the net predicts the velocity v = dx_t/dt = ε − x_0; the net's ``sigma`` input is t.
The denoised estimate at any t is x_0 = x_t − t · v. Sampling integrates dx/dt = v from
t = 1 (pure noise) down to t = 0.

Context augmentation (GameNGen, Valevski et al. 2024; DIAMOND, Alonso et al. 2024): in
training, the context latents are corrupted along the same path at a level
s ~ U(0, max_ctx_noise), one per sample, and s is given to the net, so that in
imagination it tolerates its own imperfect earlier predictions. The sampler may noise the
context too (``ctx_noise``, GameNGen's inference knob): the net is then told its context
is unreliable and leans less on the errors of its own earlier steps.

A modality imagined as a change (:attr:`FlowConfig.change`) is the change from the newest
context step *as the net sees it* (noised at s): where that step is corrupted, the change
the net learns includes undoing the corruption, so with ``ctx_noise`` > 0 a rollout can
pull its errors back instead of adding every step's error to the next (at s = 0 it is the
plain change from the last step).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from avworld.models.av_cdit import AV_CDIT_PRESETS, AVCDiT, AVCDiTConfig

TIME_SAMPLINGS = ("logit_normal", "uniform")


@dataclass
class FlowConfig:
    max_ctx_noise: float = 0.3
    """Context latents are noised at a level s ~ U(0, max_ctx_noise) in training; 0 turns augmentation off."""
    reward_weight: float = 1.0
    termination_weight: float = 1.0
    audio_weight: float = 1.0
    video_weight: float = 1.0
    time_sampling: str = "logit_normal"
    """Training times t: "logit_normal", t = sigmoid(N(logit_mean, logit_std²)) as in SD3, or "uniform" on [0, 1]."""
    logit_mean: float = 0.0
    logit_std: float = 1.0
    change: tuple[str, ...] = ()
    """Modalities imagined as their change from the context's newest step (the flow's data is z_next − z_last, z_last
    noised as the context is, and the sampler adds z_last back) instead of as the next latent: an unchanged view costs the
    net nothing, and where it is unsure its estimate stays near the last frame rather than a blur of all frames.
    () : every modality as the next latent."""

    def __post_init__(self) -> None:
        self.change = tuple(self.change)
        unknown = sorted(set(self.change) - {"video", "audio"})
        if unknown:
            raise ValueError(f"FlowConfig.change: unknown modality {unknown[0]!r}; choose from video, audio")
        if not 0.0 <= self.max_ctx_noise <= 1.0:
            raise ValueError(f"FlowConfig.max_ctx_noise must lie in [0, 1], got {self.max_ctx_noise}")
        for name in ("reward_weight", "termination_weight", "audio_weight", "video_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"FlowConfig.{name} must be ≥ 0, got {getattr(self, name)}")
        if self.time_sampling not in TIME_SAMPLINGS:
            raise ValueError(f"FlowConfig.time_sampling must be one of {TIME_SAMPLINGS}, got {self.time_sampling!r}")
        if self.logit_std <= 0:
            raise ValueError(f"FlowConfig.logit_std must be > 0, got {self.logit_std}")


@dataclass
class WorldModelConfig:
    """A world model: the AV-CDiT net and its flow objective (the ``config.yaml`` of a world-model checkpoint)."""

    net: AVCDiTConfig = field(default_factory=AVCDiTConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)


WORLD_MODEL_PRESETS = {name: WorldModelConfig(net=net) for name, net in AV_CDIT_PRESETS.items()}


def interpolate(x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """x_t = (1 − t) x_0 + t ε for x0, noise (B, ...) and t (B,)."""
    t = t.view(-1, *([1] * (x0.dim() - 1)))
    return (1 - t) * x0 + t * noise


class WorldModel(nn.Module):
    """AV-CDiT trained by flow matching, with reward and termination heads; the training contract ``forward(batch) -> (loss, logs)``."""

    def __init__(self, net: AVCDiT, flow: FlowConfig) -> None:
        super().__init__()
        self.net = net
        self.flow = flow
        self.modalities = net.config.modalities
        """The modalities ``forward`` trains on (a subset of the net's; stage 1 of the staged training sets ("video",))."""

    @classmethod
    def from_config(cls, config: WorldModelConfig) -> WorldModel:
        return cls(AVCDiT(config.net), config.flow)

    def sample_time(self, batch: int, device: torch.device) -> Tensor:
        """Training times t (B,) in (0, 1)."""
        if self.flow.time_sampling == "uniform":
            return torch.rand(batch, device=device)
        return torch.sigmoid(self.flow.logit_mean + self.flow.logit_std * torch.randn(batch, device=device))

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """Flow-matching loss of one batch of (context, action, target) windows.

        batch: "ctx_video" (B, m, C, h, w), "ctx_audio" (B, m, C_a, n) context latents and "video" (B, C, h, w),
        "audio" (B, C_a, n) target latents, all scaled to about unit variance (only the modelled modalities are read);
        "action" (B,) int64; "frame_skip" (B,) int64, optional (default 1); "reward" (B,) float; "termination" (B,) float 0/1;
        "observed" (B,) float 0/1, optional (default 1): 0 marks a window whose next observation is unknown (a counterfactual
        STOP), which teaches the reward and termination heads only.

        loss = video_weight · MSE(v) + audio_weight · MSE(v) + reward_weight · MSE(reward) + termination_weight · BCE(termination),
        MSEs averaged over elements (those of v over the observed windows).
        Logs: ``loss``, ``{video,audio}_mse``, ``reward_mse``, ``termination_bce``, detached 0-d tensors on the batch's
        device: reading one as a number waits for the device, so the trainer does it only on the steps it logs.
        """
        modalities = self.modalities
        action = batch["action"]
        b, device = action.shape[0], action.device
        t = self.sample_time(b, device)  # (B,)
        s = self.flow.max_ctx_noise * torch.rand(b, device=device)  # (B,)
        noisy, ctx, velocity, losses = {}, {}, {}, {}
        for m in modalities:
            x0, c0 = batch[m], batch[f"ctx_{m}"]
            ctx[m] = interpolate(c0, torch.randn_like(c0), s.to(c0.dtype))
            if m in self.flow.change:
                x0 = x0 - ctx[m][:, -1]  # the change from the newest step as the net sees it
            noise = torch.randn_like(x0)
            noisy[m] = interpolate(x0, noise, t.to(x0.dtype))
            velocity[m] = noise - x0
        frame_skip = batch.get("frame_skip")
        if frame_skip is None:
            frame_skip = torch.ones_like(action)
        out = self.net(noisy.get("video"), noisy.get("audio"), t, ctx.get("video"), ctx.get("audio"), action, frame_skip, s)
        weights = {f"{m}_mse": getattr(self.flow, f"{m}_weight") for m in modalities}
        weights |= {"reward_mse": self.flow.reward_weight, "termination_bce": self.flow.termination_weight}
        observed = batch.get("observed")
        for m in modalities:
            if observed is None:
                losses[f"{m}_mse"] = F.mse_loss(out[m], velocity[m])
            else:
                per_window = F.mse_loss(out[m], velocity[m], reduction="none").flatten(1).mean(1)  # (B,)
                w = observed.to(per_window.dtype)
                losses[f"{m}_mse"] = (per_window * w).sum() / w.sum().clamp_min(1.0)
        losses["reward_mse"] = F.mse_loss(out["reward"], batch["reward"].to(out["reward"].dtype))
        logit = out["termination_logit"]
        losses["termination_bce"] = F.binary_cross_entropy_with_logits(logit, batch["termination"].to(logit.dtype))
        loss = sum(weights[k] * v for k, v in losses.items())
        return loss, {"loss": loss.detach()} | {k: v.detach() for k, v in losses.items()}


Velocity = Callable[[dict[str, Tensor], Tensor], dict[str, Tensor]]
"""A velocity field over a dict of modalities: ``velocity(x, t)`` with x {modality: (B, *latent)} and t (B,) returns the
net's whole output: the velocity of each modality of x, plus its other heads (``reward``, ``termination_logit``), which a
sampler passes through from its last evaluation."""
Callback = Callable[[int, dict[str, Tensor]], None]


def velocity_field(
    net: AVCDiT,
    ctx_video: Tensor | None,
    ctx_audio: Tensor | None,
    action: Tensor,
    frame_skip: Tensor | None = None,
    ctx_noise: float = 0.0,
) -> Velocity:
    """The net's velocity for one batch of windows, as a :data:`Velocity`, told that its context is noised at level
    ``ctx_noise`` (0: clean; the caller noises the context itself, see :func:`sample`).

    ctx_video (B, m, C, h, w), ctx_audio (B, m, C_a, n): context latents (None: the modality is not imagined); action (B,)
    int64; frame_skip (B,) int64, default 1. Built by :meth:`AVCDiT.velocity_fn`, which computes the context's tokens
    and keys/values once for all sampler steps.
    """
    if frame_skip is None:
        frame_skip = torch.ones_like(action)
    level = torch.full((action.shape[0],), float(ctx_noise), device=action.device, dtype=next(net.parameters()).dtype)
    return net.velocity_fn(ctx_video, ctx_audio, action, frame_skip, level)


@torch.no_grad()
def euler(velocity: Velocity, noise: dict[str, Tensor], steps: int, callback: Callback | None = None) -> dict[str, Tensor]:
    """Euler integration of dx/dt = v from t = 1 (``noise``, {modality: (B, *latent)}) to t = 0 in ``steps`` uniform steps.

    Returns the latents at t = 0 and the velocity's other outputs at its last evaluation (t = 1 / steps). ``callback(i, state)``
    runs after step i = 0 … steps − 1 with state "t" (the time reached, 0-d), the latents at that time, their denoised
    estimates "denoised_<modality>" (x_0 = x_t − t v at the step's start) and the other outputs of the step's evaluation.
    """
    if steps < 1:
        raise ValueError(f"steps must be ≥ 1, got {steps}")
    x = dict(noise)
    first = next(iter(x.values()))
    b = first.shape[0]
    times = torch.linspace(1.0, 0.0, steps + 1, device=first.device, dtype=first.dtype)
    rest: dict[str, Tensor] = {}
    for i in range(steps):
        t, t_next = times[i], times[i + 1]
        out = velocity(x, t.expand(b))
        denoised = {f"denoised_{m}": x[m] - t * out[m] for m in x}
        x = {m: x[m] + (t_next - t) * out[m] for m in x}
        rest = {k: v for k, v in out.items() if k not in x}
        if callback is not None:
            callback(i, {"t": t_next, **x, **denoised, **rest})
    return x | rest


@torch.no_grad()
def sample(
    net: AVCDiT,
    ctx_video: Tensor | None,
    ctx_audio: Tensor | None,
    action: Tensor,
    frame_skip: Tensor | None = None,
    steps: int = 4,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    noise: dict[str, Tensor] | None = None,
    change: tuple[str, ...] = (),
    ctx_noise: float = 0.0,
    ctx_eps: dict[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """Imagine the next step: :func:`euler` over the net's :func:`velocity_field`, from noise drawn or given.

    Args:
        net: the flow net (the velocity predictor v = ε − x_0, see the module docstring).
        ctx_video: (B, m, C, h, w) clean context latents, or None to imagine without video; likewise
        ctx_audio: (B, m, C_a, n). The modalities whose context is given are imagined.
        action: (B,) int64; frame_skip: (B,) int64, default 1.
        steps: Euler steps (network evaluations), ≥ 1.
        generator: source of the initial noise (on the net's device); the result is deterministic given its seed.
        callback: see :func:`euler`; its state holds "reward" and "termination" (probability) of the step's evaluation.
        noise: the initial noise at t = 1, {modality: (B, *latent)} for each imagined modality, instead of drawing it from
            ``generator``: callers that keep one random stream per world (the imagined vector env) draw it themselves.
        change: the modalities the net imagines as a change from the context's newest step (:attr:`FlowConfig.change`):
            their latents, and the callback's, get that step added back.
        ctx_noise: the level s in [0, 1) the context is noised at before the net sees it (x = (1 − s) x + s ε, ε drawn from
            ``generator``, or torch's global generator when there is none, as when ``noise`` is given) and that the net is
            told, as in training (:attr:`FlowConfig.max_ctx_noise`); 0: clean, and nothing drawn.
        ctx_eps: that ε, {modality: (B, m, *latent)} like the contexts, instead of drawing it (per-world streams, as ``noise``).

    Returns:
        "video" (B, C, h, w) and/or "audio" (B, C_a, n), the latents at t = 0; "reward" (B,) and "termination" (B,) probability,
        from the heads at the last evaluation (t = 1 / steps).
    """
    if steps < 1:
        raise ValueError(f"steps must be ≥ 1, got {steps}")
    config = net.config
    b, device = action.shape[0], action.device
    dtype = next(net.parameters()).dtype
    latents = {"video": config.video_latent, "audio": config.audio_latent}
    modalities = [m for m, ctx in (("video", ctx_video), ("audio", ctx_audio)) if ctx is not None]
    if noise is None:
        x = {m: torch.randn((b, *latents[m]), generator=generator, device=device, dtype=dtype) for m in modalities}
    else:
        for m in modalities:
            if m not in noise or tuple(noise[m].shape) != (b, *latents[m]):
                got = tuple(noise[m].shape) if m in noise else None
                raise ValueError(f"noise[{m!r}] must be a tensor of shape {(b, *latents[m])}, got {got}")
        x = {m: noise[m].to(device=device, dtype=dtype) for m in modalities}
    check_ctx_noise(ctx_noise)
    context = {"video": ctx_video, "audio": ctx_audio}
    if ctx_noise > 0:
        for m in modalities:
            c = context[m]
            assert c is not None
            if ctx_eps is None:
                eps = torch.randn(c.shape, generator=generator, device=c.device, dtype=c.dtype)
            elif m in ctx_eps and ctx_eps[m].shape == c.shape:
                eps = ctx_eps[m].to(device=c.device, dtype=c.dtype)
            else:
                got = tuple(ctx_eps[m].shape) if m in ctx_eps else None
                raise ValueError(f"ctx_eps[{m!r}] must be a tensor of shape {tuple(c.shape)}, got {got}")
            context[m] = (1.0 - ctx_noise) * c + ctx_noise * eps
    last = {m: context[m][:, -1].to(dtype) for m in modalities if m in change}  # type: ignore[index]

    def absolute(state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Latents (and denoised estimates) of changes made absolute, the termination logit made a probability."""
        state = dict(state)
        for m, z in last.items():
            for key in (m, f"denoised_{m}"):
                if key in state:
                    state[key] = state[key] + z
        return _with_probability(state)

    heads = None if callback is None else lambda i, state: callback(i, absolute(state))
    velocity = velocity_field(net, context["video"], context["audio"], action, frame_skip, ctx_noise)
    return absolute(euler(velocity, x, steps, heads))


def check_ctx_noise(level: float) -> float:
    """``level`` if it is a context noise level the sampler takes, in [0, 1); else a ValueError naming ``ctx_noise``."""
    if not 0.0 <= level < 1.0:
        raise ValueError(f"ctx_noise must lie in [0, 1), got {level}")
    return level


def _with_probability(out: dict[str, Tensor]) -> dict[str, Tensor]:
    """The net's termination logit replaced by its probability."""
    out = dict(out)
    out["termination"] = torch.sigmoid(out.pop("termination_logit"))
    return out
