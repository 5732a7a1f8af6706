"""The real world (numpy/scipy/pyroomacoustics, no torch): :mod:`~avworld.sim.scenes`, :mod:`~avworld.sim.navigation`,
the :mod:`~avworld.sim.renderer`, :mod:`~avworld.sim.acoustics`, the simulator :mod:`~avworld.sim.backends`, and their
settings :class:`~avworld.sim.config.SimConfig`."""
