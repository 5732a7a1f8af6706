"""avworld: a world agents can see and hear, and a learned model of it they can imagine in.

Importing ``avworld`` registers its Gymnasium env ids (``avworld/AudioNav-v0``, ``avworld/Dream-v0``).
"""

from avworld.envs.registration import register_envs

__version__ = "0.1.0"

register_envs()
