"""Prediction quality of world models (``avworld eval world_model checkpoint=DIR``): autoregressive rollouts against real trajectories.

Each window of a test split holds M real context steps and H real future steps with
the actions between them. A :class:`Predictor` sees the context and the H real
actions and imagines the H future steps on its own (for a world model: encode the
context once, then predict → push → predict … in latent space, decoding each
imagined step). The imagined steps are scored against the real ones:

- at step h of each horizon h (the h-th imagined step): video PSNR, SSIM and sharpness; audio
  LSD, spectral SSIM, ILD error and direction (:mod:`avworld.eval.metrics`). Sharpness is the
  mean image-gradient energy of the imagined frames over that of the real ones (1 = as sharp as
  real; blur, which PSNR rewards, gives less; None where the real frames are all flat).
  Direction is the share of the steps whose real 1.5-6 kHz interaural level difference
  exceeds 2 dB in magnitude where the imagined one has the same sign (``direction_steps``
  counts those steps; None where there are none, or without ``sample_rate``);
- over steps 1 … h: reward MAE and termination F1 (probability ≥ 0.5 is a predicted end);
- over the whole rollout of the largest horizon (one value, None below
  :data:`AV_SYNC_MIN_STEPS` steps): audio-visual synchrony. :func:`av_sync` gives the lag
  and peak (the correlation of largest magnitude, with its sign) of the cross-correlation
  between the motion energy of the frames and the audio energy of the steps, for the
  imagined and for the real rollout, each over its own steps 2 … T (motion of step t is
  frame t against frame t − 1 of the same rollout: against the real last context frame, an
  imagined first frame would show the tokenizer's reconstruction error as motion); AV-Corr
  error is |peak_imagined − peak_real| over all windows, AV-Lag error |lag_imagined − lag_real| in steps over the windows where both
  sequences vary (a constant one, such as copy-last's motion, has no lag; None, with a
  note, where no window has one). The sign matters: in avworld's data the agent's
  footsteps sound on FORWARD and turns move the image more, so motion and audio energy
  are anti-correlated at lag 0 (docs/results.md).

Window scores are averaged over windows, except sharpness and direction (pooled, as said above) and PSNR, which is the PSNR of the mean
squared error over windows, 10 log10(1 / mean MSE): a blocked FORWARD repeats a frame
exactly, and the infinite PSNR of such windows would otherwise rule a per-window mean
(copy-last gets a large share of them).

Baselines share the protocol: :class:`CopyLast` repeats the last context observation,
:class:`Separate` pairs a video-only and an audio-only world model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from avworld.eval.metrics import (
    CLEAR_ILD_DB,
    SPECTROGRAM_FLOOR,
    direction_cues,
    gradient_energy,
    ild_error_db,
    lsd,
    psnr,
    spectral_ssim,
    ssim,
)
from avworld.models.imagination import Imagination

HORIZONS = (1, 2, 4, 8, 16)
AV_SYNC_MIN_STEPS = 4
"""Rollouts shorter than this have no meaningful cross-correlation: AV-Lag and AV-Corr are None."""
VIDEO_METRICS = ("psnr", "ssim", "sharpness")
AUDIO_METRICS = ("lsd", "spectral_ssim", "ild_error_db", "direction", "direction_steps")
AVERAGED = ("psnr", "ssim", "lsd", "spectral_ssim", "ild_error_db")
"""Metrics averaged over windows (PSNR as the mean squared error); sharpness and direction are pooled ratios."""
AV_METRICS = ("av_lag_error", "av_corr_error")


# -- audio-visual synchrony --------------------------------------------------------------------


def motion_energy(frames: Tensor) -> Tensor:
    """Visual motion energy per step: mean absolute difference of consecutive frames on [0, 1] pixels.

    frames (B, T, H, W, 3) uint8 or [0, 1] floats → (B, T − 1); entry t compares frame t + 1 with frame t.
    """
    x = frames.float() / 255.0 if frames.dtype == torch.uint8 else frames.float()
    return (x[:, 1:] - x[:, :-1]).abs().mean(dim=(2, 3, 4))


def audio_energy(audio: Tensor) -> Tensor:
    """Audio energy per step: natural log of the RMS over both ears, floored at :data:`SPECTROGRAM_FLOOR`: (B, T, 2, N) → (B, T)."""
    return audio.float().square().mean(dim=(2, 3)).sqrt().clamp(min=SPECTROGRAM_FLOOR).log()


def _centred(x: Tensor) -> Tensor:
    """Rows of (B, T) minus their means, float."""
    return x.float() - x.float().mean(dim=1, keepdim=True)


def varies(x: Tensor) -> Tensor:
    """Rows of (B, T) that are not constant (a lag of their cross-correlation means something): (B,) bool."""
    return _centred(x).norm(dim=1) > 1e-6


def _standardise(x: Tensor) -> Tensor:
    """Zero mean, unit Euclidean norm per row: (B, T) → (B, T); a constant row becomes zeros."""
    x = _centred(x)
    norm = x.norm(dim=1, keepdim=True)
    return torch.where(norm > 1e-6, x / norm.clamp(min=1e-6), torch.zeros_like(x))


def av_sync(motion: Tensor, audio_energy: Tensor, max_lag: int) -> tuple[Tensor, Tensor]:
    """Lag and peak of the normalised cross-correlation between motion energy and audio energy sequences.

    Both (B, T) sequences are made zero-mean and unit-norm, then c(k) = Σ_t x[t] · y[t + k] over the
    overlap, for k = −max_lag … max_lag (no wrap-around; c(0) is the Pearson correlation).
    Sign convention: lag k > 0 means the audio energy FOLLOWS the motion by k steps (y[t] ≈ x[t − k]).
    The peak is the c(k) of largest magnitude, sign kept: a coupling is one whichever way it goes (loud
    when the image moves least is as synchronous as loud when it moves most). Ties go to the smallest
    |k| (then the negative one), so a constant sequence, which correlates with nothing (c ≡ 0), gives
    lag 0 and peak 0; :func:`varies` tells those rows apart.

    Returns lag (B,) int64 and peak (B,) float.
    """
    if motion.dim() != 2 or motion.shape != audio_energy.shape:
        shapes = f"{tuple(motion.shape)} and {tuple(audio_energy.shape)}"
        raise ValueError(f"av_sync needs motion and audio_energy of one shape (B, T), got {shapes}")
    t = motion.shape[1]
    if not 0 <= max_lag < t:
        raise ValueError(f"av_sync: max_lag must lie in [0, T) = [0, {t}), got {max_lag}")
    x, y = _standardise(motion), _standardise(audio_energy)
    padded = torch.nn.functional.pad(y, (max_lag, max_lag))  # (B, T + 2L)
    corr = (padded.unfold(1, t, 1) * x.unsqueeze(1)).sum(dim=-1)  # (B, 2L + 1): column j is lag j − L
    lags = sorted(range(-max_lag, max_lag + 1), key=lambda k: (abs(k), k))
    order = torch.tensor([k + max_lag for k in lags], device=corr.device)
    best = corr[:, order].abs().argmax(dim=1)  # first maximum: the smallest |lag| among ties
    return torch.tensor(lags, device=corr.device)[best], corr[:, order].gather(1, best.unsqueeze(1)).squeeze(1)


# -- predictors --------------------------------------------------------------------------------


class Predictor(Protocol):
    """Something that imagines the future of a batch of windows from their context and the real actions."""

    modalities: tuple[str, ...]
    """Imagined modalities, a subset of ("video", "audio")."""
    context: int
    """How many context steps it reads (the most recent ones)."""
    device: torch.device

    def rollout(self, context: dict[str, Tensor], actions: Tensor, sampler_steps: int, generator: torch.Generator) -> dict[str, Tensor]:
        """Imagine T steps autoregressively.

        context: ``rgb`` uint8 (B, M, H, W, 3), ``audio`` (B, M, 2, N) real observations, oldest first, M ≥ ``self.context``;
        actions (B, T) int64, action t taken after step t − 1 (action 0 after the last context step).
        Returns ``rgb`` uint8 (B, T, H, W, 3) with video, ``audio`` float32 (B, T, 2, N) with audio, ``reward`` (B, T) and
        ``termination`` (B, T) probability, on ``self.device``.
        """
        ...


class WorldPredictor:
    """A world model (:class:`Imagination`) as a predictor: latent rollouts of the imagination core, decoded step by step."""

    def __init__(self, world: Imagination) -> None:
        self.world = world
        self.modalities, self.context, self.device = world.modalities, world.context, world.device

    @torch.no_grad()
    def rollout(self, context: dict[str, Tensor], actions: Tensor, sampler_steps: int, generator: torch.Generator) -> dict[str, Tensor]:
        """See :meth:`Predictor.rollout`: start from the last m context steps (encoded once), then step and decode each step."""
        m = self.context
        state = self.world.start([{k: v[i, -m:] for k, v in context.items()} for i in range(len(actions))])
        actions = actions.to(self.device)
        steps: list[dict[str, Tensor]] = []
        for t in range(actions.shape[1]):
            step = self.world.step(state, actions[:, t], sampler_steps, generator)
            state = step.state
            steps.append(self.world.decode(step.latents) | {"reward": step.reward.float(), "termination": step.termination.float()})
        return {k: torch.stack([s[k] for s in steps], dim=1) for k in steps[0]}


class CopyLast:
    """Baseline: every imagined step repeats the last context observation; the reward is a constant, the episode never ends.

    ``reward`` defaults to 0: the step cost (−0.01) and the progress term of the real reward roughly cancel over mixed
    behaviours, and a constant taken from the evaluated windows would leak their labels.
    """

    modalities = ("video", "audio")
    context = 1

    def __init__(self, reward: float = 0.0, device: str | torch.device = "cpu") -> None:
        self.reward, self.device = reward, torch.device(device)

    def rollout(self, context: dict[str, Tensor], actions: Tensor, sampler_steps: int, generator: torch.Generator) -> dict[str, Tensor]:
        """See :meth:`Predictor.rollout`; ``sampler_steps`` and ``generator`` are unused."""
        b, t = actions.shape
        out = {k: context[k][:, -1:].to(self.device).expand(-1, t, *context[k].shape[2:]) for k in ("rgb", "audio")}
        zeros = torch.zeros(b, t, device=self.device)
        return out | {"reward": zeros + self.reward, "termination": zeros}


class Separate:
    """Baseline: a video-only and an audio-only predictor stepped together; reward and termination come from the video one.

    Neither model sees the other's modality, so rolling them out one after the other is the same as interleaving
    their steps; only the noise draws each takes from the shared generator differ.
    """

    def __init__(self, video: Predictor, audio: Predictor) -> None:
        if "video" not in video.modalities:
            raise ValueError(f"Separate: the video predictor imagines {video.modalities}, not video")
        if "audio" not in audio.modalities:
            raise ValueError(f"Separate: the audio predictor imagines {audio.modalities}, not audio")
        self.video, self.audio = video, audio
        self.modalities = ("video", "audio")
        self.context = max(video.context, audio.context)
        self.device = video.device

    def rollout(self, context: dict[str, Tensor], actions: Tensor, sampler_steps: int, generator: torch.Generator) -> dict[str, Tensor]:
        """See :meth:`Predictor.rollout`."""
        v = self.video.rollout(context, actions, sampler_steps, generator)
        a = self.audio.rollout(context, actions, sampler_steps, generator)
        return {"rgb": v["rgb"], "audio": a["audio"].to(self.device), "reward": v["reward"], "termination": v["termination"]}


# -- evaluation --------------------------------------------------------------------------------


@dataclass
class PredictionScores:
    """Scores of one predictor: ``metrics[name][h]`` is the value at horizon h (None where it does not apply)."""

    horizons: tuple[int, ...]
    windows: int
    metrics: dict[str, dict[int, float | None]]
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: horizons become string keys."""
        metrics = {k: {str(h): v for h, v in per.items()} for k, per in self.metrics.items()}
        return {"horizons": list(self.horizons), "windows": self.windows, "metrics": metrics, "notes": self.notes}


class _Totals:
    """Running sums of one evaluation, over batches of windows; ``av_lag`` is the largest lag of AV sync, None to skip it;
    ``sample_rate`` (Hz) of the audio, None to skip direction."""

    def __init__(self, horizons: tuple[int, ...], modalities: tuple[str, ...], av_lag: int | None, sample_rate: int | None) -> None:
        self.horizons, self.modalities, self.av_lag, self.sample_rate = horizons, modalities, av_lag, sample_rate
        self.index = torch.tensor([h - 1 for h in horizons])
        names = ["reward_mae"]
        if "video" in modalities:
            names += [k for k in VIDEO_METRICS if k in AVERAGED]
        if "audio" in modalities:
            names += [k for k in AUDIO_METRICS if k in AVERAGED]
        self.sums = {k: torch.zeros(len(horizons), dtype=torch.float64) for k in names}
        self.pooled: dict[str, Tensor] = {}  # name → (2, k): numerator and denominator sums per horizon
        if "video" in modalities:
            self.pooled["sharpness"] = torch.zeros(2, len(horizons), dtype=torch.float64)  # imagined, real gradient energy
        if "audio" in modalities and sample_rate is not None:
            self.pooled["direction"] = torch.zeros(2, len(horizons), dtype=torch.float64)  # agreeing, clear steps
        self.counts = {k: torch.zeros(len(horizons), dtype=torch.float64) for k in ("tp", "fp", "fn")}
        self.av_sums = torch.zeros(2, dtype=torch.float64)  # summed lag and peak errors
        self.av_lagged = 0  # windows in the lag sum (the peak sum covers all)
        self.windows = 0

    def add(self, pred: dict[str, Tensor], real: dict[str, Tensor]) -> None:
        """pred: a rollout (see :meth:`Predictor.rollout`); real: the same keys over the same T steps."""
        idx = self.index.to(pred["reward"].device)
        real = {k: v.to(pred["reward"].device) for k, v in real.items()}
        b, k = pred["reward"].shape[0], len(self.horizons)

        def at_horizons(metric: Callable[[Tensor, Tensor], Tensor], key: str) -> Tensor:  # (k,) sums over the batch
            p, r = pred[key][:, idx].flatten(0, 1), real[key][:, idx].flatten(0, 1)
            return metric(p, r).double().view(b, k).sum(dim=0).cpu()

        if "video" in self.modalities:
            self.sums["psnr"] += at_horizons(lambda p, r: 10.0 ** (-psnr(p, r) / 10.0), "rgb")  # summed MSE; PSNR in scores()
            self.sums["ssim"] += at_horizons(ssim, "rgb")
            self.pooled["sharpness"] += torch.stack(
                [at_horizons(lambda p, r: gradient_energy(p), "rgb"), at_horizons(lambda p, r: gradient_energy(r), "rgb")]
            )
        if "audio" in self.modalities:
            for name, metric in zip(AVERAGED[2:], (lsd, spectral_ssim, ild_error_db), strict=True):
                self.sums[name] += at_horizons(metric, "audio")
            if self.sample_rate is not None:
                p, r = pred["audio"][:, idx].flatten(0, 1), real["audio"][:, idx].flatten(0, 1)
                clear, agree = direction_cues(p, r, self.sample_rate)  # (B · k,) each
                self.pooled["direction"] += torch.stack([agree, clear]).double().view(2, b, k).sum(dim=1).cpu()
        error = (pred["reward"].double() - real["reward"].double()).abs().cumsum(dim=1)  # (B, T): summed over steps 1 … t
        self.sums["reward_mae"] += error[:, idx].sum(dim=0).cpu()
        said, true = pred["termination"] >= 0.5, real["termination"].bool()
        for name, hits in (("tp", said & true), ("fp", said & ~true), ("fn", ~said & true)):
            self.counts[name] += hits.double().cumsum(dim=1)[:, idx].sum(dim=0).cpu()
        if self.av_lag is not None:
            sums, lagged = self._av_errors(pred, real, self.av_lag)
            self.av_sums += sums
            self.av_lagged += lagged
        self.windows += b

    @staticmethod
    def _av_errors(pred: dict[str, Tensor], real: dict[str, Tensor], max_lag: int) -> tuple[Tensor, int]:
        """Summed |lag_pred − lag_real| (over windows where all four sequences vary) and |peak_pred − peak_real|
        (over all) of the batch, (2,), and how many windows the lag sum covers."""
        sequences = []
        for rollout in (pred, real):
            motion, loudness = motion_energy(rollout["rgb"]), audio_energy(rollout["audio"][:, 1:])  # (B, T − 1) each
            sequences.append((*av_sync(motion, loudness, max_lag), varies(motion) & varies(loudness)))
        (lag_p, peak_p, has_p), (lag_r, peak_r, has_r) = sequences
        lagged = has_p & has_r
        lag_error = (lag_p - lag_r).abs().double()[lagged].sum()
        sums = torch.stack([lag_error, (peak_p - peak_r).abs().double().sum()]).cpu()
        return sums, int(lagged.sum())

    def scores(self) -> PredictionScores:
        """Means over windows (and steps, for the reward), F1 from the pooled counts."""
        n, hs, notes = self.windows, self.horizons, []
        steps = torch.tensor(hs, dtype=torch.float64)
        metrics: dict[str, dict[int, float | None]] = {}
        for name in (*VIDEO_METRICS, *AUDIO_METRICS):
            metrics[name] = {h: float(v) / n for h, v in zip(hs, self.sums[name], strict=True)} if name in self.sums else dict.fromkeys(hs)
        if "psnr" in self.sums:
            # zero error reads 200 dB rather than infinity, which JSON cannot hold
            metrics["psnr"] = {h: -10.0 * math.log10(max(mse, 1e-20)) for h, mse in metrics["psnr"].items()}  # type: ignore[arg-type]
        for name, (top, bottom) in self.pooled.items():
            metrics[name] = {h: float(t / d) if d > 0 else None for h, t, d in zip(hs, top, bottom, strict=True)}
            empty = [h for h in hs if metrics[name][h] is None]
            if empty and name == "sharpness":
                notes.append(f"sharpness@{','.join(map(str, empty))}: None, the real frames there are flat (no gradient to compare with)")
            if name == "direction":
                metrics["direction_steps"] = {h: int(d) for h, d in zip(hs, bottom, strict=True)}
                if empty:
                    why = f"no real step there has a 1.5-6 kHz ILD beyond {CLEAR_ILD_DB:g} dB"
                    notes.append(f"direction@{','.join(map(str, empty))}: None, {why}")
        if "audio" in self.modalities and self.sample_rate is None:
            notes.append("direction: None, no sample_rate given to evaluate_prediction")
        metrics["reward_mae"] = {h: float(v) for h, v in zip(hs, self.sums["reward_mae"] / (n * steps), strict=True)}
        tp, fp, fn = self.counts["tp"], self.counts["fp"], self.counts["fn"]
        metrics["termination_f1"] = {}
        for i, h in enumerate(hs):
            positives = int(tp[i] + fn[i])
            metrics["termination_f1"][h] = float(2 * tp[i] / (2 * tp[i] + fp[i] + fn[i])) if positives else None
            if not positives:
                notes.append(f"termination_f1@{h}: no real episode end in steps 1..{h} of these windows, F1 undefined (None)")
        last = max(hs)
        lagged = self.av_lagged
        for j, (name, counted) in enumerate(zip(AV_METRICS, (lagged, n), strict=True)):
            metrics[name] = {last: None if self.av_lag is None or not counted else float(self.av_sums[j]) / counted}
        if self.av_lag is not None and lagged < n:
            if lagged:
                notes.append(f"av_lag_error: over {lagged} of {n} windows; the others have constant motion or loudness (no lag)")
            else:
                notes.append("av_lag_error: None, every window has constant motion or loudness (no lag)")
        if self.av_lag is None:
            short = last < AV_SYNC_MIN_STEPS
            why = f"the largest horizon {last} is below {AV_SYNC_MIN_STEPS} steps" if short else "it needs both modalities"
            notes.append(f"av_lag_error, av_corr_error: None, {why}")
        return PredictionScores(hs, n, metrics, notes)


def _spread(n: int, most: int | None) -> list[int]:
    """Up to ``most`` window indices of ``n``, evenly spaced (every episode and scene gets its share, deterministically)."""
    if most is not None and most < 1:
        raise ValueError(f"max_windows must be ≥ 1, got {most}")
    if most is None or most >= n:
        return list(range(n))
    return torch.linspace(0, n - 1, most).round().long().unique().tolist()


def check_horizons(horizons: Sequence[int]) -> tuple[int, ...]:
    """Distinct positive horizons, sorted; ValueError naming ``horizons`` otherwise."""
    hs = tuple(sorted({int(h) for h in horizons}))
    if not hs or hs[0] < 1 or len(hs) != len(horizons):
        raise ValueError(f"horizons must be distinct integers ≥ 1, got {list(horizons)}")
    return hs


@torch.no_grad()
def evaluate_prediction(
    predictor: Predictor,
    windows: Dataset[dict[str, Tensor]],
    context: int,
    horizons: Sequence[int] = HORIZONS,
    batch_size: int = 32,
    sampler_steps: int = 4,
    seed: int = 0,
    max_windows: int | None = None,
    max_lag: int = 4,
    on_batch: Callable[[int], None] | None = None,
    sample_rate: int | None = None,
) -> PredictionScores:
    """Score ``predictor``'s rollouts against the real future of each window (see the module docstring).

    windows: items of :class:`avworld.data.windows.WindowDataset` with ``context`` context steps and at least
    max(horizons) future steps: ``rgb`` (M+H, H_img, W_img, 3), ``audio`` (M+H, 2, N), ``actions``, ``rewards``,
    ``terminations`` (M+H−1,). ``max_windows`` evenly spaced windows are used (all when None); batches of
    ``batch_size`` are imagined at once, with noise from one generator seeded with ``seed``. AV sync uses lags up to
    ``max_lag`` (and below the largest horizon). ``on_batch(windows)`` is called after each batch. ``sample_rate`` (Hz) of
the windows' audio is needed for direction (None: direction is None, with a note).
    """
    hs = check_horizons(horizons)
    last = hs[-1]
    if predictor.context > context:
        raise ValueError(f"the predictor reads {predictor.context} context steps, the windows have {context}")
    if max_lag < 0:
        raise ValueError(f"max_lag must be ≥ 0, got {max_lag}")
    n = len(windows)  # type: ignore[arg-type]
    if n == 0:
        raise ValueError(f"no windows to evaluate: each needs {context} context + {last} future observations")
    subset = Subset(windows, _spread(n, max_windows))
    av = {"video", "audio"} <= set(predictor.modalities) and last >= AV_SYNC_MIN_STEPS
    totals = _Totals(hs, predictor.modalities, min(max_lag, last - 2) if av else None, sample_rate)  # sequences of last − 1 steps
    generator = torch.Generator(predictor.device).manual_seed(seed)
    for batch in DataLoader(subset, batch_size=batch_size):
        span = batch["rgb"].shape[1]
        if span < context + last:
            raise ValueError(f"windows hold {span} observations, horizon {last} after {context} context steps needs {context + last}")
        future = slice(context - 1, context - 1 + last)  # the transitions after the last context step
        real = {
            "rgb": batch["rgb"][:, context : context + last],
            "audio": batch["audio"][:, context : context + last],
            "reward": batch["rewards"][:, future],
            "termination": batch["terminations"][:, future],
        }
        observed = {"rgb": batch["rgb"][:, :context], "audio": batch["audio"][:, :context]}
        pred = predictor.rollout(observed, batch["actions"][:, future], sampler_steps, generator)
        totals.add(pred, real)
        if on_batch is not None:
            on_batch(len(batch["actions"]))
    return totals.scores()


# -- the table ---------------------------------------------------------------------------------

COLUMNS = {
    "psnr": ("PSNR↑", "{:.2f}"),
    "ssim": ("SSIM↑", "{:.3f}"),
    "sharpness": ("sharp→1", "{:.2f}"),
    "lsd": ("LSD↓", "{:.2f}"),
    "spectral_ssim": ("spec-SSIM↑", "{:.3f}"),
    "ild_error_db": ("ILD err↓", "{:.2f}"),
    "direction": ("dir↑", "{:.2f}"),
    "direction_steps": ("dir steps", "{:.0f}"),
    "reward_mae": ("reward MAE↓", "{:.4f}"),
    "termination_f1": ("term F1↑", "{:.3f}"),
    "av_lag_error": ("AV-Lag↓", "{:.2f}"),
    "av_corr_error": ("AV-Corr↓", "{:.3f}"),
}
"""Metric → (table header, number format)."""


def _table_horizons(horizons: tuple[int, ...]) -> tuple[int, ...]:
    """The horizons a table shows: the first, the middle and the last."""
    return tuple(sorted({horizons[0], horizons[len(horizons) // 2], horizons[-1]}))


def format_table(
    results: dict[str, PredictionScores], about: dict[str, str] | None = None, ranking: dict[str, float] | None = None
) -> str:
    """A markdown table, one row per predictor, columns metric@h for the first, middle and last horizon, then AV sync.

    ``about`` adds a column describing each row (preset, data size, training); ``ranking`` a last column, the action
    ranking's hit rate of the models that have one (:mod:`avworld.eval.ranking`); "—" marks a metric that does not apply.
    """
    if not results:
        raise ValueError("format_table needs at least one result")
    horizons = _table_horizons(next(iter(results.values())).horizons)
    cols = [(k, h) for k in COLUMNS if k not in AV_METRICS for h in horizons]
    cols += [(k, None) for k in AV_METRICS]
    header = ["model", *(["about"] if about else []), *(f"{COLUMNS[k][0]}@{h}" if h else COLUMNS[k][0] for k, h in cols)]
    header += ["best move↑"] if ranking is not None else []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, scores in results.items():
        cells = [name, *([about.get(name, "")] if about else [])]
        for k, h in cols:
            per = scores.metrics[k]
            value = per.get(h if h is not None else max(scores.horizons))
            cells.append("—" if value is None or math.isnan(value) else COLUMNS[k][1].format(value))
        if ranking is not None:
            rate = ranking.get(name)
            cells.append("—" if rate is None or math.isnan(rate) else f"{rate:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
