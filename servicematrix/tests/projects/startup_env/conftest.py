import app  # noqa: F401 - builds its clients from the environment, before any fixture
