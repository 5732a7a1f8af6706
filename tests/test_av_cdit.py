"""AV-CDiT and its flow-matching wrapper: shapes, parameter groups, staged freezing, conditioning, learning, sampling."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from avworld.models import precision
from avworld.models.av_cdit import AV_CDIT_PRESETS, AVCDiT, AVCDiTConfig, count_parameters, forward_flops, unpatchify
from avworld.models.flow import FlowConfig, WorldModel, interpolate, sample

TINY = AV_CDIT_PRESETS["tiny"]
UNIMODAL = [("video", "audio"), ("video",), ("audio",)]


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**overrides: object) -> AVCDiTConfig:
    return dataclasses.replace(TINY, **overrides)


def make_batch(config: AVCDiTConfig, b: int = 3, m: int | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random WorldModel batch for ``config``, with m context steps (default config.context) and frame skips ≥ 1."""
    g = torch.Generator().manual_seed(seed)
    m = config.context if m is None else m
    return {
        "ctx_video": torch.randn(b, m, *config.video_latent, generator=g),
        "ctx_audio": torch.randn(b, m, *config.audio_latent, generator=g),
        "video": torch.randn(b, *config.video_latent, generator=g),
        "audio": torch.randn(b, *config.audio_latent, generator=g),
        "action": torch.randint(0, config.actions, (b,), generator=g),
        "frame_skip": torch.randint(1, config.max_frame_skip + 1, (b,), generator=g),
        "reward": torch.randn(b, generator=g),
        "termination": (torch.rand(b, generator=g) < 0.5).float(),
    }


def net_inputs(batch: dict[str, torch.Tensor], config: AVCDiTConfig) -> dict[str, torch.Tensor | None]:
    """Keyword inputs of AVCDiT.forward from a batch: the targets as noisy latents at t = 0.5, None for unmodelled modalities."""
    b = batch["action"].shape[0]
    kwargs = {"sigma": torch.full((b,), 0.5), "ctx_noise": torch.full((b,), 0.1)}
    kwargs |= {"action": batch["action"], "frame_skip": batch["frame_skip"]}
    for m in ("video", "audio"):
        kwargs[f"x_{m}"] = batch[m] if m in config.modalities else None
        kwargs[f"ctx_{m}"] = batch[f"ctx_{m}"] if m in config.modalities else None
    return kwargs


def randomize(net: torch.nn.Module, seed: int = 0) -> None:
    """Fill every all-zero parameter (adaLN-Zero modulations, output layers, biases) with N(0, 0.2²).

    At initialisation the zero gates make the outputs independent of the conditioning; this makes every input visible.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            if not p.any():
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


# -- shapes and config -------------------------------------------------------------------------


@pytest.mark.parametrize("modalities", UNIMODAL)
@pytest.mark.parametrize("context", [4, 2])
def test_forward_shapes(modalities: tuple[str, ...], context: int) -> None:
    config = tiny(modalities=modalities, context=context)
    net = AVCDiT(config)
    batch = make_batch(config, b=3)
    batch["frame_skip"] = torch.tensor([1, 3, config.max_frame_skip])
    out = net(**net_inputs(batch, config))
    expected = {"video": (3, *config.video_latent), "audio": (3, *config.audio_latent)}
    assert set(out) == {*modalities, "reward", "termination_logit"}
    for m in modalities:
        assert out[m].shape == expected[m]
    assert out["reward"].shape == out["termination_logit"].shape == (3,)
    assert all(torch.isfinite(v).all() for v in out.values())


def test_fewer_context_steps_than_configured_and_input_checks() -> None:
    net = AVCDiT(TINY)
    batch = make_batch(TINY, m=2)
    assert net(**net_inputs(batch, TINY))["video"].shape == (3, *TINY.video_latent)
    too_many = make_batch(TINY, m=TINY.context + 1)
    with pytest.raises(ValueError, match="context steps"):
        net(**net_inputs(too_many, TINY))
    kwargs = net_inputs(batch, TINY) | {"x_audio": None}
    with pytest.raises(ValueError, match="x_audio"):
        net(**kwargs)
    kwargs = net_inputs(batch, TINY) | {"x_video": torch.zeros(3, 4, 8, 6)}
    with pytest.raises(ValueError, match="x_video"):
        net(**kwargs)
    video_alone = net(**(net_inputs(batch, TINY) | {"x_audio": None, "ctx_audio": None}))  # stage 1 runs the net on video alone
    assert set(video_alone) == {"video", "reward", "termination_logit"}
    with pytest.raises(ValueError, match="at least one"):
        net(**(net_inputs(batch, TINY) | {"x_audio": None, "ctx_audio": None, "x_video": None, "ctx_video": None}))
    with pytest.raises(ValueError, match="does not model audio"):
        AVCDiT(tiny(modalities=("video",)))(**net_inputs(batch, TINY) | {"x_audio": batch["audio"], "ctx_audio": batch["ctx_audio"]})


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"patch": 3}, "patch"),
        ({"video_latent": (4, 8, 6), "patch": 4}, "patch"),
        ({"audio_patch": 3}, "audio_patch"),
        ({"dim": 66}, "dim"),
        ({"modalities": ("video", "depth")}, "modalities"),
        ({"modalities": ()}, "modalities"),
        ({"context": 0}, "context"),
    ],
)
def test_invalid_config_names_the_field(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=rf"AVCDiTConfig\.{field} "):
        tiny(**overrides)


# -- parameter groups and experts --------------------------------------------------------------


@pytest.mark.parametrize("experts", [True, False])
@pytest.mark.parametrize("modalities", UNIMODAL)
def test_parameter_groups_cover_every_parameter_once(experts: bool, modalities: tuple[str, ...]) -> None:
    net = AVCDiT(tiny(experts=experts, modalities=modalities))
    groups = net.parameter_groups()
    assert set(groups) == {"shared", "video", "audio", "heads"}
    names = [name for group in groups.values() for name in group]
    assert sorted(names) == sorted(name for name, _ in net.named_parameters())
    assert len(names) == len(set(names))
    assert groups["heads"] and groups["shared"]
    for m in ("video", "audio"):
        assert bool(groups[m]) == (m in modalities)
        assert all(name.startswith((f"{m}_in.", f"{m}_out.")) or f".{m}_expert." in name for name in groups[m])
        assert any(f".{m}_expert." in name for name in groups[m]) == (experts and m in modalities)


def test_experts_are_separate_parameters_and_the_ablation_shares_one_ffn() -> None:
    net = AVCDiT(TINY)
    params = dict(net.named_parameters())
    for i in range(TINY.depth):
        video = params[f"blocks.{i}.ffn.video_expert.mlp.0.weight"]
        audio = params[f"blocks.{i}.ffn.audio_expert.mlp.0.weight"]
        assert video is not audio and video.data_ptr() != audio.data_ptr()
        assert not torch.equal(video, audio)
    shared = AVCDiT(tiny(experts=False))
    assert all(set(block.ffn) == {"shared"} for block in shared.blocks)
    assert not any("_expert." in name for name, _ in shared.named_parameters())
    assert count_parameters(tiny(experts=False)) < count_parameters(TINY) == sum(p.numel() for p in net.parameters())


def test_count_parameters_grows_with_the_presets() -> None:
    counts = [count_parameters(config) for config in AV_CDIT_PRESETS.values()]
    assert list(AV_CDIT_PRESETS) == ["tiny", "small", "base", "large"]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)


# -- staged training ---------------------------------------------------------------------------


def test_stage_two_freezing_trains_only_audio_and_heads() -> None:
    torch.manual_seed(0)
    model = WorldModel(AVCDiT(TINY), FlowConfig())
    groups = model.net.parameter_groups()
    params = dict(model.net.named_parameters())
    frozen = set(groups["shared"] + groups["video"])
    for name in frozen:
        params[name].grad = None
        params[name].requires_grad_(False)
    before = {name: p.detach().clone() for name, p in params.items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    batch = make_batch(TINY, b=4)
    for _ in range(4):
        optimizer.zero_grad()
        loss, _ = model(batch)
        loss.backward()
        optimizer.step()
    for name in frozen:
        assert params[name].grad is None
        assert torch.equal(params[name], before[name]), name
    for name in groups["audio"] + groups["heads"]:
        assert not torch.equal(params[name], before[name]), name


# -- conditioning is used ----------------------------------------------------------------------


def test_outputs_depend_on_every_context_step_and_on_the_conditioning() -> None:
    net = AVCDiT(TINY)
    randomize(net)
    batch = make_batch(TINY, b=2)
    kwargs = net_inputs(batch, TINY)
    with torch.no_grad():
        base = net(**kwargs)

        def changed(**replaced: torch.Tensor) -> bool:
            out = net(**(kwargs | replaced))
            return all(not torch.allclose(out[k], base[k], atol=1e-4) for k in ("video", "audio", "reward", "termination_logit"))

        for k in range(TINY.context):
            ctx_video = batch["ctx_video"].clone()
            ctx_video[:, k] += 1.0
            ctx_audio = batch["ctx_audio"].clone()
            ctx_audio[:, k] += 1.0
            assert changed(ctx_video=ctx_video), f"video context step {k} is ignored"
            assert changed(ctx_audio=ctx_audio), f"audio context step {k} is ignored"
        assert changed(action=(batch["action"] + 1) % TINY.actions)
        assert changed(frame_skip=batch["frame_skip"] % TINY.max_frame_skip + 1)
        assert changed(sigma=torch.full((2,), 0.9))
        assert changed(ctx_noise=torch.zeros(2))
        assert changed(x_audio=batch["audio"] + 1.0)  # joint attention: audio informs the video prediction, and back


def test_zero_init_starts_every_output_from_zero_except_the_heads() -> None:
    net = AVCDiT(TINY)
    with torch.no_grad():
        out = net(**net_inputs(make_batch(TINY), TINY))
    assert torch.count_nonzero(out["video"]) == 0 and torch.count_nonzero(out["audio"]) == 0
    assert torch.count_nonzero(out["reward"]) > 0


# -- flow matching -----------------------------------------------------------------------------


@pytest.mark.parametrize("modalities", UNIMODAL)
def test_world_model_loss_and_logs(modalities: tuple[str, ...]) -> None:
    config = tiny(modalities=modalities)
    batch = make_batch(config)
    for m in {"video", "audio"} - set(modalities):  # an unmodelled modality need not be in the batch
        del batch[m], batch[f"ctx_{m}"]
    del batch["frame_skip"]
    loss, logs = WorldModel(AVCDiT(config), FlowConfig(time_sampling="uniform"))(batch)
    assert loss.shape == () and torch.isfinite(loss)
    assert set(logs) == {"loss", "reward_mse", "termination_bce", *(f"{m}_mse" for m in modalities)}
    # detached 0-d tensors, so that a training step never waits for the device to read them
    assert all(isinstance(v, torch.Tensor) and v.shape == () and not v.requires_grad for v in logs.values())
    assert logs["loss"].item() == loss.item()
    assert float(logs["loss"]) == pytest.approx(sum(float(v) for k, v in logs.items() if k != "loss"), rel=1e-5)


def test_unobserved_windows_teach_only_the_heads() -> None:
    """``observed`` = 0 (a counterfactual STOP): its targets do not enter the flow loss, its reward and termination do."""
    model = WorldModel(AVCDiT(TINY), FlowConfig())

    def logs(batch: dict[str, torch.Tensor]) -> dict[str, float]:
        torch.manual_seed(1)  # the same times and noise draws every call
        return {k: float(v) for k, v in model(batch)[1].items()}

    batch = make_batch(TINY) | {"observed": torch.tensor([1.0, 0.0, 1.0])}
    base = logs(batch)
    other_targets = batch | {m: batch[m].clone().index_fill_(0, torch.tensor([1]), 7.0) for m in ("video", "audio")}
    moved = logs(other_targets)
    assert moved["video_mse"] == pytest.approx(base["video_mse"]) and moved["audio_mse"] == pytest.approx(base["audio_mse"])
    assert logs(batch | {"reward": batch["reward"] + torch.tensor([0.0, 5.0, 0.0])})["reward_mse"] > base["reward_mse"] + 1
    all_observed = logs(batch | {"observed": torch.ones(3)})
    plain = logs({k: v for k, v in batch.items() if k != "observed"})
    assert all_observed["video_mse"] == pytest.approx(plain["video_mse"], rel=1e-5)
    assert logs(other_targets | {"observed": torch.ones(3)})["video_mse"] > all_observed["video_mse"] + 1  # observed: it counts


def test_a_few_adam_steps_lower_the_loss_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    model = WorldModel(AVCDiT(TINY), FlowConfig())
    batch = make_batch(TINY, b=8)

    def evaluate() -> dict[str, float]:
        torch.manual_seed(123)  # the same times and noise for both evaluations
        with torch.no_grad():
            return model(batch)[1]

    start = evaluate()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(40):
        optimizer.zero_grad()
        model(batch)[0].backward()
        optimizer.step()
    end = evaluate()
    assert end["loss"] < 0.8 * start["loss"]
    # adaLN-Zero learns the velocity slowly at first (the gates open from zero), but it must already improve
    assert end["video_mse"] < 0.97 * start["video_mse"] and end["audio_mse"] < 0.97 * start["audio_mse"]


def test_interpolation_convention() -> None:
    x0, noise = torch.randn(2, 3), torch.randn(2, 3)
    assert torch.equal(interpolate(x0, noise, torch.zeros(2)), x0)
    assert torch.equal(interpolate(x0, noise, torch.ones(2)), noise)
    assert torch.allclose(interpolate(x0, noise, torch.full((2,), 0.25)), 0.75 * x0 + 0.25 * noise)


class ExactVelocity(torch.nn.Module):
    """The exact flow velocity towards fixed targets: v(x_t, t) = (x_t − x_0) / t, so every Euler step is exact."""

    def __init__(self, config: AVCDiTConfig, targets: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.config = config
        self.targets = targets
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x_video, x_audio, sigma, ctx_video, ctx_audio, action, frame_skip, ctx_noise) -> dict[str, torch.Tensor]:
        t = sigma.view(-1, 1, 1)
        out = {"video": (x_video - self.targets["video"]) / t[..., None], "audio": (x_audio - self.targets["audio"]) / t}
        return out | {"reward": action.float(), "termination_logit": torch.zeros_like(sigma)}

    def velocity_fn(self, ctx_video, ctx_audio, action, frame_skip, ctx_noise):
        return lambda x, sigma: self(x.get("video"), x.get("audio"), sigma, ctx_video, ctx_audio, action, frame_skip, ctx_noise)


@pytest.mark.parametrize("steps", [1, 3, 8])
def test_euler_sampler_lands_on_the_target_of_an_exact_velocity(steps: int) -> None:
    targets = {"video": torch.randn(2, *TINY.video_latent), "audio": torch.randn(2, *TINY.audio_latent)}
    action = torch.tensor([1, 2])
    ctx = {m: torch.zeros(2, 1, *x.shape[1:]) for m, x in targets.items()}  # the stub ignores it; its presence selects the modality
    out = sample(ExactVelocity(TINY, targets), ctx["video"], ctx["audio"], action, steps=steps, generator=torch.Generator().manual_seed(0))
    for m in ("video", "audio"):
        assert torch.allclose(out[m], targets[m], atol=1e-5)
    assert torch.equal(out["reward"], action.float()) and torch.equal(out["termination"], torch.full((2,), 0.5))


def test_a_change_target_is_added_to_the_newest_context_step() -> None:
    """FlowConfig.change: the flow's data is z_next − z_last; the sampler adds z_last back (latents and callback alike),
    and the training loss is zero for a net whose velocity points at the change."""
    change = {"video": torch.randn(2, *TINY.video_latent), "audio": torch.randn(2, *TINY.audio_latent)}
    ctx = {m: torch.randn(2, 3, *x.shape[1:]) for m, x in change.items()}
    seen: list[torch.Tensor] = []
    out = sample(
        ExactVelocity(TINY, change), ctx["video"], ctx["audio"], torch.tensor([1, 3]), steps=3, change=("video",),
        generator=torch.Generator().manual_seed(0), callback=lambda i, state: seen.append(state["denoised_video"]),
    )
    assert torch.allclose(out["video"], ctx["video"][:, -1] + change["video"], atol=1e-5)
    assert torch.allclose(out["audio"], change["audio"], atol=1e-5)  # not listed: the next latent itself
    assert torch.allclose(seen[-1], ctx["video"][:, -1] + change["video"], atol=1e-5)
    with pytest.raises(ValueError, match=r"FlowConfig\.change: unknown modality 'depth'"):
        FlowConfig(change=("depth",))

    class ChangeVelocity(ExactVelocity):  # the training loss's view: noise − x0, with x0 the change
        def forward(self, x_video, x_audio, sigma, *rest):
            return super().forward(x_video, x_audio, sigma, *rest)

    batch = {"ctx_video": ctx["video"], "ctx_audio": ctx["audio"], "video": ctx["video"][:, -1] + change["video"],
             "audio": change["audio"], "action": torch.tensor([1, 3]), "reward": torch.zeros(2), "termination": torch.zeros(2)}
    model = WorldModel(ChangeVelocity(TINY, change), FlowConfig(change=("video",), max_ctx_noise=0.0))
    _, logs = model(batch)
    assert float(logs["video_mse"]) < 1e-8 and float(logs["audio_mse"]) < 1e-8
    _, logs = WorldModel(ChangeVelocity(TINY, change), FlowConfig(max_ctx_noise=0.0))(batch)
    assert float(logs["video_mse"]) > 1e-2  # the same net is wrong where the next latent itself is the target


class UndoingVelocity(ExactVelocity):
    """The exact velocity towards next − (the newest context step as given to it): a net that has learnt to undo the
    corruption of its context. Records the context noise levels it is told."""

    def __init__(self, config: AVCDiTConfig, following: dict[str, torch.Tensor]) -> None:
        super().__init__(config, {})
        self.following = following
        self.levels: list[torch.Tensor] = []

    def forward(self, x_video, x_audio, sigma, ctx_video, ctx_audio, action, frame_skip, ctx_noise) -> dict[str, torch.Tensor]:
        self.targets = {"video": self.following["video"] - ctx_video[:, -1], "audio": self.following["audio"]}
        self.levels.append(ctx_noise)
        return super().forward(x_video, x_audio, sigma, ctx_video, ctx_audio, action, frame_skip, ctx_noise)


def test_a_change_is_taken_from_the_context_as_the_net_sees_it_noised_or_not() -> None:
    """With context noise (training's s, or the sampler's ``ctx_noise``) the change is the one from the noised newest step,
    so a net that undoes its context's corruption lands on the truth, in training (zero loss) and in sampling."""
    following = {"video": torch.randn(2, *TINY.video_latent), "audio": torch.randn(2, *TINY.audio_latent)}
    ctx = {m: torch.randn(2, 3, *x.shape[1:]) for m, x in following.items()}
    action = torch.tensor([1, 3])
    for level in (0.0, 0.2):
        net = UndoingVelocity(TINY, following)
        out = sample(net, ctx["video"], ctx["audio"], action, steps=3, change=("video",), ctx_noise=level,
                     generator=torch.Generator().manual_seed(0))
        assert torch.allclose(out["video"], following["video"], atol=1e-5)
        assert all(torch.equal(s, torch.full((2,), level)) for s in net.levels) and len(net.levels) == 3
    seeded = [sample(UndoingVelocity(TINY, following), ctx["video"], ctx["audio"], action, steps=2, ctx_noise=0.2,
                     generator=torch.Generator().manual_seed(5))["audio"] for _ in "ab"]
    assert torch.equal(*seeded)
    with pytest.raises(ValueError, match=r"ctx_noise must lie in \[0, 1\), got 1.0"):
        sample(UndoingVelocity(TINY, following), ctx["video"], ctx["audio"], action, ctx_noise=1.0)
    eps = {m: torch.randn(c.shape, generator=torch.Generator().manual_seed(5)) for m, c in ctx.items()}
    given = sample(UndoingVelocity(TINY, following), ctx["video"], ctx["audio"], action, steps=2, ctx_noise=0.2,
                   noise={m: torch.zeros_like(x) for m, x in following.items()}, ctx_eps=eps)
    drawn = sample(UndoingVelocity(TINY, following), ctx["video"], ctx["audio"], action, steps=2, ctx_noise=0.2,
                   noise={m: torch.zeros_like(x) for m, x in following.items()}, ctx_eps={m: 2 * e for m, e in eps.items()})
    seen = following["video"] - (0.8 * ctx["video"] + 0.2 * eps["video"])[:, -1]  # what the net returns of its noised context
    assert torch.allclose(given["video"], seen, atol=1e-5) and not torch.allclose(drawn["video"], seen, atol=1e-2)
    with pytest.raises(ValueError, match=r"ctx_eps\['video'\] must be a tensor of shape \(2, 3"):
        sample(UndoingVelocity(TINY, following), ctx["video"], ctx["audio"], action, ctx_noise=0.2, ctx_eps={"audio": eps["audio"]})
    batch = {"ctx_video": ctx["video"], "ctx_audio": ctx["audio"], "video": following["video"], "audio": following["audio"],
             "action": action, "reward": torch.zeros(2), "termination": torch.zeros(2)}
    _, logs = WorldModel(UndoingVelocity(TINY, following), FlowConfig(change=("video",), max_ctx_noise=0.5))(batch)
    assert float(logs["video_mse"]) < 1e-8 and float(logs["audio_mse"]) < 1e-8


@pytest.mark.parametrize("steps", [1, 2, 4, 8])
def test_sample_is_deterministic_and_calls_back_every_step(steps: int) -> None:
    net = AVCDiT(TINY)
    randomize(net)
    batch = make_batch(TINY, b=2)
    calls: list[tuple[int, float]] = []

    def run(callback=None) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(7)
        return sample(net, batch["ctx_video"], batch["ctx_audio"], batch["action"], batch["frame_skip"], steps, g, callback)

    first = run(lambda i, state: calls.append((i, float(state["t"]))))
    second = run()
    assert [i for i, _ in calls] == list(range(steps))
    assert [t for _, t in calls] == pytest.approx([1 - (i + 1) / steps for i in range(steps)], abs=1e-6)
    assert set(first) == {"video", "audio", "reward", "termination"}
    assert first["video"].shape == (2, *TINY.video_latent) and first["audio"].shape == (2, *TINY.audio_latent)
    assert ((first["termination"] >= 0) & (first["termination"] <= 1)).all()
    for k in first:
        assert torch.equal(first[k], second[k])
    other = sample(net, batch["ctx_video"], batch["ctx_audio"], batch["action"], steps=steps, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(other["video"], first["video"])


def test_sample_unimodal() -> None:
    config = tiny(modalities=("audio",))
    batch = make_batch(config, b=2)
    out = sample(AVCDiT(config), None, batch["ctx_audio"], batch["action"], steps=2, generator=torch.Generator().manual_seed(0))
    assert set(out) == {"audio", "reward", "termination"} and out["audio"].shape == (2, *config.audio_latent)


# -- the cached context of an imagined step ----------------------------------------------------


def reference_forward(net: AVCDiT, x: dict[str, torch.Tensor], sigma, ctx: dict[str, torch.Tensor], action, frame_skip, ctx_noise):
    """AV-CDiT's forward pass written out with nothing cached: context tokens and cross-attention keys/values per call."""
    b, active = action.shape[0], tuple(x)
    tokens = [getattr(net, f"{m}_in")(x[m].reshape(b, *net.shapes[m])) for m in active]
    ctx_tokens = [getattr(net, f"{m}_in")(ctx[m].reshape(-1, *net.shapes[m])).unflatten(0, ctx[m].shape[:2]) for m in active]
    h = torch.cat(tokens, dim=1)
    context = torch.cat(ctx_tokens, dim=2) + net.context_time[-ctx[active[0]].shape[1] :, None]
    context = net.context_norm(context.flatten(1, 2))
    cond = net.condition
    c = cond.action(action) + cond.frame_skip(frame_skip - 1) + cond.sigma(sigma) + cond.ctx_noise(ctx_noise)
    split = [net.tokens[m] for m in active]
    for block in net.blocks:
        shift1, scale1, gate1, shift2, scale2, gate2 = block.modulation(c).chunk(6, dim=-1)
        a = block.norm1(h) * (1 + scale1.unsqueeze(1)) + shift1.unsqueeze(1)
        h = h + gate1.unsqueeze(1) * block.self_attn(a, a)
        a = block.norm2(h) * (1 + scale2.unsqueeze(1)) + shift2.unsqueeze(1)
        h = h + gate2.unsqueeze(1) * block.cross_attn(a, context)
        h = torch.cat([block.ffn[f"{m}_expert"](part, c) for m, part in zip(active, h.split(split, dim=1), strict=True)], dim=1)
    out = {}
    for m, part in zip(active, h.split(split, dim=1), strict=True):
        image = unpatchify(getattr(net, f"{m}_out")(part, c), net.shapes[m], net.patches[m])
        out[m] = image if m == "video" else image.squeeze(2)
    pooled = h.mean(dim=1)
    return out | {"reward": net.heads["reward"](pooled).squeeze(-1), "termination_logit": net.heads["termination"](pooled).squeeze(-1)}


@pytest.mark.parametrize("preset", ["tiny", "small"])
@pytest.mark.parametrize("modalities", UNIMODAL)
def test_velocity_fn_is_bit_identical_to_forward_at_every_sampler_step(preset: str, modalities: tuple[str, ...]) -> None:
    config = dataclasses.replace(AV_CDIT_PRESETS[preset], modalities=modalities)
    net = AVCDiT(config).eval()
    randomize(net, seed=1)
    batch = make_batch(config, b=3, m=3, seed=2)
    ctx = {m: batch[f"ctx_{m}"] for m in modalities}
    given = {f"ctx_{m}": ctx.get(m) for m in ("video", "audio")}
    cond = {"action": batch["action"], "frame_skip": batch["frame_skip"], "ctx_noise": torch.tensor([0.0, 0.1, 0.3])}
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        f = net.velocity_fn(**given, **cond)
        for sigma in (1.0, 0.75, 0.3):  # one closure serves every step of a sampler run
            x = {m: torch.randn(3, *net.latent(m), generator=g) for m in modalities}
            s = torch.full((3,), sigma)
            cached = f(x, s)
            direct = net(x.get("video"), x.get("audio"), s, given["ctx_video"], given["ctx_audio"], **cond)
            reference = reference_forward(net, x, s, ctx, **cond)
            assert set(cached) == set(direct) == {*modalities, "reward", "termination_logit"}
            for k in cached:
                assert torch.equal(cached[k], direct[k]) and torch.equal(cached[k], reference[k]), k


def test_velocity_fn_computes_the_context_once_and_checks_its_targets() -> None:
    net = AVCDiT(TINY)
    batch = make_batch(TINY, b=2)
    calls = {"kv": 0, "ctx_noise": 0}
    for block in net.blocks:
        block.cross_attn.kv.register_forward_hook(lambda *_: calls.__setitem__("kv", calls["kv"] + 1))
    net.condition.ctx_noise.register_forward_hook(lambda *_: calls.__setitem__("ctx_noise", calls["ctx_noise"] + 1))
    f = net.velocity_fn(batch["ctx_video"], batch["ctx_audio"], batch["action"], batch["frame_skip"], torch.zeros(2))
    assert calls == {"kv": TINY.depth, "ctx_noise": 1}
    for _ in range(4):
        f({"video": batch["video"], "audio": batch["audio"]}, torch.full((2,), 0.5))
    assert calls == {"kv": TINY.depth, "ctx_noise": 1}  # the sampler steps reuse the cached keys and values
    with pytest.raises(ValueError, match="targets of the modalities"):
        f({"video": batch["video"]}, torch.full((2,), 0.5))
    with pytest.raises(ValueError, match="x_audio"):
        f({"video": batch["video"], "audio": batch["audio"][:, :, :4]}, torch.full((2,), 0.5))
    with pytest.raises(ValueError, match="ctx_video"):
        net.velocity_fn(batch["ctx_video"][:, :, :2], batch["ctx_audio"], batch["action"], batch["frame_skip"], torch.zeros(2))
    with pytest.raises(ValueError, match="at least one"):
        net.velocity_fn(None, None, batch["action"], batch["frame_skip"], torch.zeros(2))


# -- FLOPs and compilation ---------------------------------------------------------------------


def attention_by_matmuls(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Attention as two batched matmuls, which FlopCounterMode counts (the fused CPU kernel it does not)."""
    return torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, dim=-1) @ v


@pytest.mark.parametrize(
    ("modalities", "experts", "m"), [(("video", "audio"), True, 4), (("video",), True, 2), (("video", "audio"), False, 3)]
)
def test_forward_flops_match_a_counted_pass(monkeypatch: pytest.MonkeyPatch, modalities: tuple[str, ...], experts: bool, m: int) -> None:
    config = tiny(modalities=modalities, experts=experts)
    net = AVCDiT(config)
    batch = make_batch(config, b=2, m=m)
    monkeypatch.setattr(F, "scaled_dot_product_attention", attention_by_matmuls)
    flops = forward_flops(config, m)
    with FlopCounterMode(display=False) as counted:
        net(**net_inputs(batch, config))
    assert counted.get_total_flops() == 2 * (flops["context"] + flops["target"])
    with torch.no_grad():
        f = net.velocity_fn(
            *(batch[f"ctx_{k}"] if k in modalities else None for k in ("video", "audio")),
            batch["action"],
            batch["frame_skip"],
            torch.zeros(2),
        )
        x = {k: batch[k] for k in modalities}
        with FlopCounterMode(display=False) as counted:
            for sigma in (1.0, 0.5, 0.25):
                f(x, torch.full((2,), sigma))
    assert counted.get_total_flops() == 2 * 3 * flops["target"]  # the sampler steps pay for the targets only


def test_forward_flops_by_hand_on_a_minimal_config() -> None:
    config = AVCDiTConfig(
        video_latent=(1, 2, 2), audio_latent=(1, 1), context=1, patch=2, dim=4, depth=1, heads=1, mlp_ratio=1.0, modalities=("video",)
    )
    # one target token of 4 inputs, one context token; D = 4, hidden 4; multiply-adds:
    context = 4 * 4 + 2 * 4 * 4 + (256 * 4 + 16)  # context embedding, cross-attention k/v, context-noise MLP
    block = 6 * 16 + 3 * 16 + 2 * 4 + 16 + 2 * 16 + 2 * 4 + 3 * 16 + 2 * 4 * 4  # modulation, self-attn, cross-attn, expert
    target = 4 * 4 + (256 * 4 + 16) + block + (2 * 16 + 4 * 4) + 2 * (16 + 4)  # embedding, sigma MLP, block, final layer, heads
    assert forward_flops(config) == {"context": 2 * context, "target": 2 * target}


def test_compiled_falls_back_to_eager_when_compiling_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_compile(fn, mode=None):
        def run(*args, **kwargs):
            raise RuntimeError("no C++ compiler")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    double = precision.compiled(lambda x: 2 * x, what="double")
    with pytest.warns(UserWarning, match="torch.compile of double failed.*no C\\+\\+ compiler"):
        assert double(3) == 6
    assert double(4) == 8  # eager from now on, without another warning

    def check(x: int) -> int:
        if x < 0:
            raise ValueError("negative")
        return x

    monkeypatch.setattr(torch, "compile", lambda fn, mode=None: fn)
    checked = precision.compiled(check)
    with pytest.raises(ValueError, match="negative"):  # the function's own error is no compiler failure
        checked(-1)


def test_compile_velocity_routes_both_parts_through_the_compiler(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, str | None]] = []

    def recording_compile(fn, mode=None):
        seen.append((fn.__name__, mode))
        return fn

    monkeypatch.setattr(torch, "compile", recording_compile)
    net = AVCDiT(TINY)
    randomize(net)
    batch = make_batch(TINY, b=2)
    eager = net(**net_inputs(batch, TINY))
    net.compile_velocity()
    assert sorted(seen) == [("_context", None), ("_target", "reduce-overhead")]  # CUDA graphs for the per-step part only
    again = net(**net_inputs(batch, TINY))
    assert all(torch.equal(eager[k], again[k]) for k in eager)


def test_attention_runs_on_the_fused_sdpa_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, ...]] = []
    fused = F.scaled_dot_product_attention

    def counting(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(k.shape))
        return fused(q, k, v)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counting)
    net = AVCDiT(TINY)
    batch = make_batch(TINY, b=2, m=3)
    net(**net_inputs(batch, TINY))
    n = sum(net.tokens.values())
    assert calls == [(2, TINY.heads, n, TINY.dim // TINY.heads), (2, TINY.heads, 3 * n, TINY.dim // TINY.heads)] * TINY.depth
