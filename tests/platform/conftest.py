import pytest

from tests.conftest import system_loaders_remove


@pytest.fixture(autouse=True)
def _registry_without_system_loaders(request: pytest.FixtureRequest) -> None:
    system_loaders_remove(request)
