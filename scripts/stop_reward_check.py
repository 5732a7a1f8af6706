"""Does a world model know where STOP pays? Its predicted STOP reward near the source and away from it.

    python scripts/stop_reward_check.py WORLD_MODEL_CHECKPOINT DATA_ROOT DATA_NAME [--split test]

For every window of the collection's ``split`` scenes (m context steps), the model imagines the
outcome of STOP after the context; the truth is known without running it: +10 (minus 0.01) where
the last context step's geodesic distance is within the success distance, −0.01 elsewhere.
Prints mean predicted reward near / far, and how often "predicted reward ≥ 5" (the planner's STOP
gate) agrees with the truth, as JSON.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from avworld.data.storage import DataRef
from avworld.data.windows import WindowConfig, WindowDataset, within_reach
from avworld.models.imagination import FIELDS, Imagination
from avworld.sim.backends.base import Action

BATCH = 128


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("root")
    parser.add_argument("name")
    parser.add_argument("--split", default="test", help="test: every window (a test collection); train: the hash-train share")
    parser.add_argument("--sampler-steps", type=int, default=4)
    args = parser.parse_args(argv)

    world = Imagination.load(args.checkpoint)
    data = DataRef(root=args.root, name=args.name).load()
    fractions = (0.0, 0.0, 1.0) if args.split == "test" else (0.9, 0.05, 0.05)
    windows = WindowDataset(data, WindowConfig(context=world.context, horizon=1, split=args.split, fractions=fractions))
    near = within_reach(data, windows.obs_index + world.context - 1)
    predicted = []
    generator = torch.Generator().manual_seed(0)
    for start in range(0, len(windows), BATCH):
        items = [windows[i] for i in range(start, min(start + BATCH, len(windows)))]
        obs = {FIELDS[m]: torch.stack([it[FIELDS[m]][: world.context] for it in items]) for m in world.modalities}
        context = world.encode(obs)
        action = torch.full((len(items),), int(Action.STOP))
        out = world.predict(context, action, steps=args.sampler_steps, generator=generator)
        predicted.append(out["reward"].float().cpu().numpy())
    reward = np.concatenate(predicted)
    gate = reward >= 5.0
    result = {
        "checkpoint": args.checkpoint,
        "windows": len(reward),
        "near_windows": int(near.sum()),
        "mean_predicted_stop_reward_near": float(reward[near].mean()) if near.any() else None,
        "mean_predicted_stop_reward_far": float(reward[~near].mean()) if (~near).any() else None,
        "gate_true_positive_rate": float(gate[near].mean()) if near.any() else None,
        "gate_false_positive_rate": float(gate[~near].mean()) if (~near).any() else None,
        "gate_accuracy": float((gate == near).mean()),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
