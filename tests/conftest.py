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
