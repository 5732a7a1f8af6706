"""scripts/clone_generalisation.py: its variants name the settings they change, and a one-modality view of a world."""

import pytest

from tests.conftest import load_script

clone_generalisation = load_script("clone_generalisation")


def test_variants_name_their_settings() -> None:
    assert clone_generalisation.variant("default") == ({}, None, 0.0)
    assert clone_generalisation.variant("steps1_h64") == ({"steps": 1, "hidden": 64}, None, 0.0)
    assert clone_generalisation.variant("audio_steps1") == ({"steps": 1}, "audio", 0.0)
    assert clone_generalisation.variant("wd0.1") == ({}, None, 0.1)
    with pytest.raises(SystemExit, match="unknown variant"):
        clone_generalisation.variant("steps2")


def test_one_modality_keeps_that_latent_only() -> None:
    class World:
        context, device = 4, "cpu"

        def latent_shapes(self) -> dict[str, tuple[int, ...]]:
            return {"video": (8, 8, 8), "audio": (22, 20)}

    view = clone_generalisation.OneModality(World(), "audio")
    assert view.modalities == ("audio",) and view.context == 4
    assert view.latent_shapes() == {"audio": (22, 20)}
