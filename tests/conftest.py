import os

import pytest

# Everything runs offline: the project ships or builds every model it uses.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def toy_pipe():
    from unlearn_core.research.toyworld.assets import load_toy_pipeline

    return load_toy_pipeline()


@pytest.fixture(scope="session")
def classifier():
    from unlearn_core.research.toyworld.assets import load_toy_classifier

    return load_toy_classifier()


@pytest.fixture(scope="session")
def adapter(toy_pipe):
    from unlearn_core.adapters.diffusers_adapter import DiffusersAdapter

    return DiffusersAdapter(toy_pipe)


# Fixtures that load the embedded toy model or classifier (directly or through another fixture).
TOY_FIXTURES = {"toy_pipe", "classifier", "adapter"}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(config, items):
    """`toy` on every test that reaches the embedded toy model through a fixture (tests that reach it
    another way, e.g. a CLI subprocess, carry @pytest.mark.toy themselves); `unit` on every test that
    is then neither slow, comfyui nor toy."""
    for item in items:
        if TOY_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.toy)
        if not any(item.get_closest_marker(name) for name in ("slow", "comfyui", "toy")):
            item.add_marker(pytest.mark.unit)
