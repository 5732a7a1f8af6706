"""Does behaviour cloning on a collection's latents carry to scenes it has not seen?

    python scripts/clone_generalisation.py DATA_ROOT NAME [--world pretrained] [--reads 250 500 1000 2000]
        [--variants default steps1_h64 audio video_steps1] [--labels taken|expert] [--top 0.5] [--out clone_generalisation.json]

For each variant an imagination agent's actor (:class:`~avworld.policies.imagination_train.ImaginationTrainer`, the
settings of ``avworld train agent agent=imagination imagination.bc_top=0.5 imagination.stop=goal``) is cloned on the
collection's train scenes, and at each read its accuracy on the top-half episodes' moves (STOP left out: the goal head
decides it) is measured on the val and test scenes, beside the share of the most common move there (what always
answering it scores) and the accuracy on its own training batches. Variants: ``default``; ``steps1`` (the last context
step only), ``h64`` (64 hidden units), ``steps1_h64``; ``audio`` / ``video`` (one modality's latents; ``_steps1``: its
last step); ``wd0.01`` / ``wd0.1`` (AdamW weight decay). ``--labels expert`` clones and scores the shortest-path
follower's moves (``imagination.labels=expert``) on the ``--top`` share of episodes (default: all of them; 0.5 for the
moves taken). Prints one JSON line per variant (docs/results.md, 2026-12-06 fifth and sixth sessions).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
import torch

from avworld.data.storage import DataSplit
from avworld.models.imagination import load_world
from avworld.models.pretrained import resolve_checkpoint
from avworld.policies.imagination_train import ImaginationTrainConfig, ImaginationTrainer, OfflineLatents, clone_rows

STOP = 0


class OneModality:
    """The world model as the trainer sees it, with only ``modality``'s latents for the networks."""

    def __init__(self, world: Any, modality: str) -> None:
        self.world, self.modalities, self.context, self.device = world, (modality,), world.context, world.device

    def latent_shapes(self) -> dict[str, tuple[int, ...]]:
        return {m: s for m, s in self.world.latent_shapes().items() if m in self.modalities}


def variant(name: str) -> tuple[dict[str, Any], str | None, float]:
    """Trainer settings, the one modality (None: all) and the weight decay of variant ``name``."""
    settings: dict[str, Any] = {}
    if name.startswith("wd"):
        return settings, None, float(name[2:])
    parts = name.split("_")
    modality = parts[0] if parts[0] in ("audio", "video") else None
    if "steps1" in parts:
        settings["steps"] = 1
    if "h64" in parts:
        settings["hidden"] = 64
    if not (set(parts) <= {"default", "audio", "video", "steps1", "h64"}):
        raise SystemExit(f"unknown variant {name!r}")
    return settings, modality, 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root")
    parser.add_argument("name")
    parser.add_argument("--world", default="pretrained")
    parser.add_argument("--reads", type=int, nargs="+", default=[250, 500, 1000, 2000])
    parser.add_argument("--variants", nargs="+", default=["default", "steps1_h64", "audio", "video_steps1"])
    parser.add_argument("--labels", choices=["taken", "expert"], default="taken")
    parser.add_argument("--top", type=float, default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    top = args.top if args.top is not None else (0.5 if args.labels == "taken" else 1.0)
    world = load_world(resolve_checkpoint(args.world), "cpu")
    expert = args.labels == "expert"
    data = {s: OfflineLatents(world, DataSplit(root=args.root, name=args.name, split=s), expert=expert) for s in ("train", "val", "test")}
    targets = {s: d.expert if expert else d.actions for s, d in data.items()}  # (N,) what is cloned and scored
    held: dict[str, torch.Tensor] = {}
    majority: dict[str, float] = {}
    for split in ("val", "test"):
        rows = clone_rows(data[split], top)
        rows = rows[np.asarray(targets[split].cpu())[rows] != STOP]
        held[split] = torch.from_numpy(rows)
        majority[split] = float(np.bincount(np.asarray(targets[split].cpu())[rows]).max() / len(rows))

    def accuracy(trainer: ImaginationTrainer, split: str) -> float:
        with torch.no_grad():
            state, previous, _ = data[split].states(held[split])
            logits = trainer.net.logits(trainer.net.features(state.context, previous))  # (N, 4)
        return float((logits.argmax(1) == targets[split][held[split]]).float().mean())

    results = []
    for name in args.variants:
        settings, modality, decay = variant(name)
        config = ImaginationTrainConfig(checkpoint=args.world, bc_top=top, labels=args.labels, stop="goal", bc_steps=max(args.reads),
                                        updates=0, **settings)
        trainer = ImaginationTrainer(config, world if modality is None else OneModality(world, modality), data["train"])
        if decay > 0:
            params = [p for head in trainer.cloned_heads for p in head.parameters()]
            trainer.bc_opt = torch.optim.AdamW(params, lr=config.bc_lr, weight_decay=decay)
        reads = []
        for step in range(1, max(args.reads) + 1):
            logs = trainer.clone_step()
            if step in args.reads:
                reads.append({"step": step, "train_batch": logs["bc/accuracy"], "val": accuracy(trainer, "val"),
                              "test": accuracy(trainer, "test")})
        result = {"variant": name, "labels": args.labels, "top": top, "held_out_states": {s: len(r) for s, r in held.items()},
                  "majority": majority, "reads": reads}
        print(json.dumps(result), flush=True)
        results.append(result)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
