"""Measure the real world's sound as an agent hears it: clipped samples and the 1.5-6 kHz direction cue.

    python scripts/sound_check.py --split test --episodes 40            # procedural test scenes, behaviour mix
    python scripts/sound_check.py --scene examples/scenes/corridor.json  # a scene of your own

Prints one JSON object (avworld.eval.sound.SoundCheck and the settings).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from avworld.envs.audio_nav import AudioNavEnv
from avworld.eval.sound import check_sound
from avworld.sim.config import SimConfig

MIX = {"toward": 0.5, "away": 0.2, "explore": 0.3}
"""The collection's behaviour mix (avworld.data.collect.CollectConfig)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="test")
    parser.add_argument("--scene", default=None, help="a scene JSON instead of procedural scenes")
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--max-steps", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sounds", default="heard")
    parser.add_argument("--headroom-db", type=float, default=None, help="sim.acoustics.headroom_db (default: the config's)")
    args = parser.parse_args()
    acoustics = {"sounds": args.sounds} | ({"headroom_db": args.headroom_db} if args.headroom_db is not None else {})
    sim = SimConfig.from_dict({"acoustics": acoustics, "episode": {"max_steps": args.max_steps}})
    env = AudioNavEnv(split=args.split, sim=sim, sensors=("audio",), scene=args.scene)
    rng = np.random.default_rng(args.seed)
    names = list(MIX)
    episodes = [(args.seed * 100_000 + k, names[rng.choice(len(names), p=list(MIX.values()))]) for k in range(args.episodes)]
    result = check_sound(env, episodes)
    print(json.dumps({"split": args.split, "scene": args.scene, "episodes": args.episodes, **result.as_dict()}))


if __name__ == "__main__":
    main()
