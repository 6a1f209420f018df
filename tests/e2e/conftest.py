"""End-to-end tier: the functions as `make build` built them, under the Lambda emulator."""

from __future__ import annotations

import pytest

from lambda_emulator import BUILD_DIR, RUNTIME_DIR, Emulator, load_function


@pytest.fixture(scope="session")
def built():
    # A missing build is a failure, not a skip: `make test` builds before pytest runs.
    assert (BUILD_DIR / "template.yaml").exists(), f"{BUILD_DIR} missing: run `make build`"
    assert (RUNTIME_DIR / "awslambdaric").exists(), f"{RUNTIME_DIR} missing: run `make runtime`"
    return BUILD_DIR


@pytest.fixture
def start_function(built):
    """``start_function("HealthAppFunction", VAR="value")``: a warm environment, stopped after the test."""
    started: list[Emulator] = []

    def start(logical_id: str, **env: str) -> Emulator:
        emulator = Emulator(load_function(logical_id, built), extra_env=env).start()
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()
