"""Where does a goal head say STOP? Its STOP rate by distance to the source, on states of scenes it never saw.

    python scripts/goal_head_rates.py DATA_ROOT NAME [--extra NAME] [--world pretrained] [--batch 64 256]
        [--reads 1000 2000 4000] [--out goal_head_rates.json]

For each goal-head batch size a goal head (the MLP of ``imagination.stop=goal``, on the agent's latent inputs, binary
cross-entropy on whether STOP succeeds, Adam at ``bc_lr``) is fitted to the train states of collection NAME (and of the
``--extra`` collection under the same root, pooled, as ``imagination.goal_data`` adds it); at each read its STOP rate
(:meth:`ImaginationTrainer.goal_stops`) is measured on the val and test states of all those collections together, per band of recorded
geodesic distance: within the success distance (where STOP succeeds: the recall) and in the bands beyond (false STOPs).
Prints one JSON line per read (docs/results.md, 2026-12-07 eighth session).
"""

from __future__ import annotations

import argparse
import itertools
import json

import torch

from avworld.data.storage import DataSplit
from avworld.models.imagination import load_world
from avworld.models.pretrained import resolve_checkpoint
from avworld.policies.imagination_train import ImaginationTrainConfig, ImaginationTrainer, OfflineLatents

BANDS = (0.0, 1.0, 1.5, 2.0, 3.0, float("inf"))
"""Geodesic distance bands (m); the first ends at the default success distance."""


def band_rates(stop: torch.Tensor, distance: torch.Tensor) -> dict[str, float | None]:
    """STOP rate (N,) bool per distance band of ``distance`` (N,) → {"lo-hi m": share, or None where no state falls}."""
    rates: dict[str, float | None] = {}
    for lo, hi in itertools.pairwise(BANDS):
        inside = (distance > lo) & (distance <= hi)
        rates[f"{lo:g}-{hi:g} m"] = round(float(stop[inside].float().mean()), 4) if inside.any() else None
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root")
    parser.add_argument("name")
    parser.add_argument("--extra", default=None)
    parser.add_argument("--world", default="pretrained")
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--reads", type=int, nargs="+", default=[1000, 2000, 4000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    world = load_world(resolve_checkpoint(args.world), "cpu")
    names = [args.name] + ([args.extra] if args.extra else [])
    data = {(n, s): OfflineLatents(world, DataSplit(root=args.root, name=n, split=s)) for n in names for s in ("train", "val", "test")}
    results = []
    for batch in args.batch:
        config = ImaginationTrainConfig(checkpoint=args.world, stop="goal", bc_steps=max(args.reads), updates=0, goal_batch=batch,
                                        seed=args.seed)
        trainer = ImaginationTrainer(config, world, data[(args.name, "train")], data[(args.extra, "train")] if args.extra else None)
        head = trainer.net.goal
        assert head is not None
        opt = torch.optim.Adam(head.parameters(), lr=config.bc_lr)
        held = [data[(n, s)] for n in names for s in ("val", "test")]
        for step in range(1, max(args.reads) + 1):
            loss = trainer.goal_loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(head.parameters(), config.grad_clip)
            opt.step()
            if step in args.reads:
                with torch.no_grad():
                    stop = torch.cat([trainer.goal_stops(d) for d in held])
                distance = torch.cat([d.distance for d in held])
                result = {"collections": names, "goal_batch": batch, "step": step, "held_out_states": len(distance),
                          "within_reach": int((distance <= 1.0).sum()), "stop_rate": band_rates(stop, distance)}
                print(json.dumps(result), flush=True)
                results.append(result)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
