"""The imagination core: a world-model checkpoint ready to imagine, and batched imagined worlds stepped by it.

A world-model checkpoint (kind ``world_model``) carries its tokenizers inside it
(``tokenizers/video``, ``tokenizers/audio``) and, in ``meta.json``, the latent
statistics it was trained with and the observation settings of its data.
:func:`load_world` loads it onto the device :func:`choose_device` picks. An
:class:`Imagination` ties model and tokenizers together:

- :meth:`~Imagination.start` encodes real contexts into an :class:`ImaginedState` (B worlds, m latent steps each),
  :meth:`~Imagination.observe` pushes a newest real observation into one;
- :meth:`~Imagination.step` imagines the next step of every world in one sampler call (actions in; next latents,
  reward, termination probability and the pushed state out; noise drawn from a generator or given per world);
- :meth:`~Imagination.decode` and :meth:`~Imagination.observations` turn latents back into frames and binaural waveforms.

``Dream-v0`` and its vector env, the planners' imagined world and the prediction eval are thin users of it.
Everything is batched over leading dimensions.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from avworld.models.checkpoint import CheckpointError
from avworld.models.checks import check_finite
from avworld.models.flow import WorldModel, check_ctx_noise, sample
from avworld.models.precision import bf16_pays, compiled
from avworld.models.pretrained import resolve_checkpoint
from avworld.models.registry import encode, load_model
from avworld.models.video_vae import tensor_to_rgb

TOKENIZERS = {"video": "video_vae", "audio": "audio_codec"}
"""Modality → the tokenizer kind that codes it."""
FIELDS = {"video": "rgb", "audio": "audio"}
"""Modality → the observation key it codes."""


def choose_device(device: str | torch.device | None = None) -> torch.device:
    """The device to imagine, train or time on, the one place avworld decides it: ``device`` itself, or with None or
    ``"auto"`` the GPU of this process (``LOCAL_RANK`` under torchrun, else 0) when CUDA is available, else the CPU."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    return torch.device(device)


def tokenizer_meta(ckpt_meta: dict[str, Any]) -> dict[str, Any]:
    """What a world model keeps of a tokenizer's ``meta.json``: the latent statistics and the data shapes."""
    return {"latent": ckpt_meta["latent"], **{k: ckpt_meta["data"][k] for k in ("sample_rate", "rgb_shape", "audio_shape")}}


class Imagination:
    """A world model and its tokenizers on one device, in eval mode; see the module docstring.

    ``meta`` is the checkpoint's ``meta.json``: ``latent`` ({modality: {"mean", "std"}}), ``rgb_shape`` [H, W, 3],
    ``audio_shape`` [2, N], ``sample_rate``, ``sim`` (the simulator settings of the training data). ``compile``: see
    :meth:`compile`. ``ctx_noise``: the sampler's context noise level (:func:`~avworld.models.flow.sample`), an attribute
    that may be changed between steps.
    """

    def __init__(
        self,
        model: WorldModel,
        tokenizers: dict[str, nn.Module],
        meta: dict[str, Any],
        device: str | torch.device = "cpu",
        amp: bool = False,
        compile: bool = False,
        ctx_noise: float = 0.0,
        tokenizer_paths: dict[str, Path] | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.tokenizer_paths = dict(tokenizer_paths or {})
        """Each tokenizer's checkpoint directory where known (:func:`load_world`): its weights' hash keys the collection's
        latent cache (:func:`avworld.models.latents.latent_cache`)."""
        self.ctx_noise = ctx_noise
        self.amp = amp and bf16_pays(self.device)
        """Decode under bf16 autocast (asked for, and the device does bf16 in hardware; else float32)."""
        self.model = model.to(self.device).eval()
        self.net = self.model.net
        self.tokenizers = {m: t.to(self.device).eval() for m, t in tokenizers.items()}
        self.meta = meta
        self.modalities: tuple[str, ...] = self.net.config.modalities
        self.context: int = self.net.config.context
        self.stats = {m: (float(meta["latent"][m]["mean"]), float(meta["latent"][m]["std"])) for m in self.modalities}
        missing = [m for m in self.modalities if m not in self.tokenizers]
        if missing:
            raise ValueError(f"no {missing[0]} tokenizer for a world model of {self.modalities}")
        self.compiled = False
        """Whether :meth:`compile` has wrapped the sampler's net and the decoders."""
        if compile:
            self.compile()

    @property
    def ctx_noise(self) -> float:
        """The level the context is noised at before each imagined step (:func:`~avworld.models.flow.sample`); 0: clean.
        Refused outside [0, 1) when set."""
        return self._ctx_noise

    @ctx_noise.setter
    def ctx_noise(self, level: float) -> None:
        self._ctx_noise = check_ctx_noise(float(level))

    def compile(self) -> None:
        """``torch.compile`` what every imagined step runs, for speed on a GPU: the sampler's net
        (:meth:`AVCDiT.compile_velocity`: its per-step part replayed as CUDA graphs) and the tokenizer decoders, as
        ``avworld bench dream`` compiles them. Each part compiles at its first call (tens of seconds, again for each new batch
        size) and warns and runs eagerly if that fails (:func:`compiled`). Samples match eager ones to float tolerance
        (compiled kernels may sum in another order). Off unless asked for: on a CPU compiling gained nothing
        (docs/benchmarks.md). A second call does nothing."""
        if self.compiled:
            return
        self.net.compile_velocity()
        for m, tokenizer in self.tokenizers.items():
            tokenizer.decode = compiled(tokenizer.decode, "max-autotune-no-cudagraphs", f"the {m} decoder")  # type: ignore[method-assign]
        self.compiled = True

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], device: str | torch.device | None = "cpu", amp: bool = False, compile: bool = False
    ) -> Imagination:
        """:func:`load_world` (on the CPU unless ``device`` says otherwise); ``path`` may be ``"pretrained[:<name>]"``."""
        return load_world(path, device, amp, compile)

    @torch.no_grad()
    def encode(self, obs: dict[str, Tensor]) -> dict[str, Tensor]:
        """Scaled latents of observations: ``rgb`` uint8 (..., H, W, 3) → ``video`` (..., C, h, w); ``audio`` (..., 2, N) → (..., C_a, n).

        Only the modalities this model imagines are encoded; each needs its observation key.
        """
        out = {}
        for m in self.modalities:
            x = obs[FIELDS[m]].to(self.device)
            lead = x.shape[: x.dim() - (3 if m == "video" else 2)]
            z = encode(self.tokenizers[m], TOKENIZERS[m], x.reshape(-1, *x.shape[len(lead) :]))
            mean, std = self.stats[m]
            out[m] = ((z - mean) / std).reshape(*lead, *z.shape[1:])
        return out

    @torch.no_grad()
    def decode(self, latents: dict[str, Tensor]) -> dict[str, Tensor]:
        """Observations of scaled latents: ``video`` (..., C, h, w) → ``rgb`` uint8 (..., H, W, 3); ``audio`` → float32 (..., 2, N)."""
        out = {}
        for m, z in latents.items():
            if m not in self.modalities:
                continue
            lead = z.shape[: z.dim() - (3 if m == "video" else 2)]
            mean, std = self.stats[m]
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                x = self.tokenizers[m].decode(z.reshape(-1, *z.shape[len(lead) :]) * std + mean)  # type: ignore[operator]
            check_finite({FIELDS[m]: x}, f"the decoded {m}")
            x = tensor_to_rgb(x.float()) if m == "video" else x.float()
            out[FIELDS[m]] = x.reshape(*lead, *x.shape[1:])
        return out

    @torch.no_grad()
    def predict(
        self,
        context: dict[str, Tensor],
        action: Tensor,
        steps: int = 4,
        generator: torch.Generator | None = None,
        noise: dict[str, Tensor] | None = None,
        ctx_eps: dict[str, Tensor] | None = None,
    ) -> dict[str, Tensor]:
        """Imagine one step for a batch of worlds in one sampler call.

        context: {modality: (B, m, *latent)} scaled latents, oldest first; action (B,) int64.
        noise: optional initial sampler noise {modality: (B, *latent)}; drawn from ``generator`` when None (see :func:`sample`).
        ctx_eps: optional context noise {modality: (B, m, *latent)} used when :attr:`ctx_noise` > 0; likewise.
        Returns the next latents {modality: (B, *latent)}, ``reward`` (B,) and ``termination`` (B,) probability.
        """
        action = action.to(self.device)
        video, audio = context.get("video"), context.get("audio")
        out = sample(
            self.net, video, audio, action, steps=steps, generator=generator, noise=noise, change=self.model.flow.change,
            ctx_noise=self.ctx_noise, ctx_eps=ctx_eps,
        )
        check_finite(out, "the imagined step")
        return out

    def latent_shapes(self) -> dict[str, tuple[int, ...]]:
        """{modality: latent shape of one step}: ``video`` (C, h, w), ``audio`` (C_a, n)."""
        net = self.net.config
        shapes = {"video": tuple(net.video_latent), "audio": tuple(net.audio_latent)}
        return {m: shapes[m] for m in self.modalities}

    def start(self, contexts: Sequence[Mapping[str, Tensor]]) -> ImaginedState:
        """Imagined worlds started from real contexts, one per world: ``rgb`` uint8 (k, H, W, 3), ``audio`` (k, 2, N),
        1 ≤ k ≤ m, oldest first. A context shorter than m is padded in front with its oldest step (as if the agent had stood
        still); all B · m steps are encoded in one call."""
        m = self.context

        def padded(x: Tensor) -> Tensor:  # (k, ...) → (m, ...)
            return torch.cat([x[:1].expand(m - len(x), *x.shape[1:]), x]) if len(x) < m else x

        fields = [FIELDS[mod] for mod in self.modalities]
        real = {f: torch.stack([padded(torch.as_tensor(c[f])) for c in contexts]) for f in fields}  # (B, m, ...)
        return ImaginedState(self.encode(real))  # {modality: (B, m, *latent)}

    def observe(self, state: ImaginedState | None, observation: dict[str, Tensor]) -> ImaginedState:
        """``state`` with the newest real observation of each world (``rgb`` (B, H, W, 3), ``audio`` (B, 2, N)) pushed in;
        with ``state`` None, worlds whose m context steps all hold it (an episode's start, as if the agent had stood still)."""
        latest = self.encode(observation)  # {modality: (B, *latent)}
        if state is None:
            return ImaginedState({mod: z.unsqueeze(1).repeat_interleave(self.context, dim=1) for mod, z in latest.items()})
        return state.push(latest)

    @torch.no_grad()
    def step(
        self,
        state: ImaginedState,
        actions: Tensor,
        steps: int = 4,
        generator: torch.Generator | None = None,
        noise: dict[str, Tensor] | None = None,
        ctx_eps: dict[str, Tensor] | None = None,
    ) -> ImaginedStep:
        """One imagined step of every world of ``state`` under ``actions`` (B,) int64, in one sampler call of ``steps`` Euler
        steps; the initial noise {modality: (B, *latent)} is ``noise``, or drawn from ``generator`` (and the context noise
        {modality: (B, m, *latent)} of :attr:`ctx_noise` > 0 is ``ctx_eps``, or drawn)."""
        out = self.predict(state.context, actions, steps, generator, noise, ctx_eps)
        latents = {mod: out[mod] for mod in self.modalities}
        return ImaginedStep(state.push(latents), latents, out["reward"], out["termination"])

    @torch.no_grad()
    def observations(self, latents: dict[str, Tensor]) -> dict[str, Tensor]:
        """What an agent observes of latents {modality: (B, *latent)}: ``rgb`` uint8 (B, H, W, 3) and, with audio, its
        waveform ``audio`` float32 (B, 2, N) clipped to [-1, 1], as the real env bounds it."""
        decoded = self.decode(latents)
        if "audio" in decoded:
            decoded["audio"] = decoded["audio"].clamp(-1.0, 1.0).float()
        return decoded


@dataclass
class ImaginedState:
    """B imagined worlds: each one's context window {modality: (B, m, *latent)} of scaled latents, oldest first."""

    context: dict[str, Tensor]

    def __len__(self) -> int:
        return len(next(iter(self.context.values())))

    @property
    def latest(self) -> dict[str, Tensor]:
        """The newest step of each world: {modality: (B, *latent)}."""
        return {mod: z[:, -1] for mod, z in self.context.items()}

    def take(self, rows: Tensor) -> ImaginedState:
        """Worlds ``rows`` (n,) int64, repeats allowed."""
        return ImaginedState({mod: z[rows] for mod, z in self.context.items()})

    def put(self, rows: Tensor, other: ImaginedState) -> None:
        """Write ``other``'s n worlds over worlds ``rows`` (n,) of this state, in place."""
        for mod, z in self.context.items():
            z[rows] = other.context[mod]

    def push(self, latest: dict[str, Tensor]) -> ImaginedState:
        """The windows slid by one step: the oldest dropped, ``latest`` {modality: (B, *latent)} appended."""
        return ImaginedState({mod: push(z, latest[mod]) for mod, z in self.context.items()})


@dataclass
class ImaginedStep:
    """One imagined step of B worlds: their ``state`` after it, the new ``latents`` {modality: (B, *latent)}, ``reward`` (B,)
    and ``termination`` (B,) probability (the model's heads)."""

    state: ImaginedState
    latents: dict[str, Tensor]
    reward: Tensor
    termination: Tensor


def load_world(
    path: str | os.PathLike[str], device: str | torch.device | None = None, amp: bool = False, compile: bool = False
) -> Imagination:
    """The world model of checkpoint directory ``path`` with its attached tokenizers, on ``device`` (:func:`choose_device`);
    :class:`CheckpointError` names what is wrong. ``path`` may name a shipped world model instead: ``"pretrained"`` or
    ``"pretrained:<name>"`` (:func:`avworld.models.pretrained.resolve_checkpoint`).

    ``amp``: decode under bf16 autocast where the device does bf16 in hardware (the small 8-channel decoders ran 1.5x faster
    on an AMX CPU, frames within a few levels of float32; docs/benchmarks.md). ``compile``: :meth:`Imagination.compile` (opt-in;
    for GPUs)."""
    path = resolve_checkpoint(path)
    model, ckpt = load_model(path, "world_model")
    assert isinstance(model, WorldModel)
    tokenizers = {}
    for m in model.net.config.modalities:
        name = f"tokenizers/{m}"
        if name not in ckpt.attachments:
            raise CheckpointError(Path(path) / name, f"the {m} tokenizer is missing from this world-model checkpoint")
        tokenizers[m], _ = load_model(ckpt.attachments[name], TOKENIZERS[m])
    for key in ("latent", "rgb_shape", "audio_shape", "sample_rate"):
        if key not in ckpt.meta:
            raise CheckpointError(Path(path) / "meta.json", f"missing {key!r}")
    paths = {m: Path(ckpt.attachments[f"tokenizers/{m}"]) for m in tokenizers}
    return Imagination(model, tokenizers, ckpt.meta, choose_device(device), amp, compile, tokenizer_paths=paths)


def push(context: Tensor, latest: Tensor) -> Tensor:
    """Slide a context window: (B, m, ...) and the newest step (B, ...) → (B, m, ...) without the oldest step."""
    return torch.cat([context[:, 1:], latest.unsqueeze(1)], dim=1)
