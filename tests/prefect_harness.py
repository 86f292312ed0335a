"""A Prefect test server for the whole session (it takes seconds to start), with Prefect's home in
a temporary folder and telemetry off. Tests import Prefect (or `pipeline.flows`) only inside
tests that use the fixture, so that Prefect reads these settings when it first loads."""

import pytest


@pytest.fixture(scope="session")
def prefect(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-home")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PREFECT_HOME", str(home))
        env.setenv("DO_NOT_TRACK", "1")
        env.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
        # Loading prefect.main configures logging: here, not inside a test, where it would
        # replace the root logger's handlers and with them pytest's log capture.
        import prefect.main  # noqa: F401
        from prefect.settings import PREFECT_HOME, temporary_settings
        from prefect.testing.utilities import prefect_test_harness

        # temporary_settings too, for a session where something imported Prefect earlier.
        with temporary_settings({PREFECT_HOME: home}), prefect_test_harness(60):
            yield
