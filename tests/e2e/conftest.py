"""Fixtures for the end-to-end tests: the firmware staged once (precompiled, as for a board), a
ledger made once (gateway key, demo residents) that each hall starts from a copy of, and halls
that are closed after the test whatever happened in it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from e2e_support import QUICK
from onestop.host.fwtools import stage_firmware
from onestop.host.sim.card import Latency
from onestop.host.sim.rig import Hall, prepare_ledger


@pytest.fixture(scope="session")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return stage_firmware(tmp_path_factory.mktemp("firmware") / "stage", "unix", compiled=True)


@pytest.fixture(scope="session")
def ledger_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_ledger(tmp_path_factory.mktemp("ledger"))


HallFactory = Callable[..., Hall]


@pytest.fixture
def make_hall(tmp_path: Path, stage: Path, ledger_template: Path) -> Iterator[HallFactory]:
    """make_hall(**timeouts_ms) -> a booted hall with the QUICK timeouts (and these);
    make_hall(serial_gateway=True, ...): its kiosk reaches the gateway over a serial line."""
    halls: list[Hall] = []

    def make(serial_gateway: bool = False, **timeouts: int) -> Hall:
        hall = Hall(tmp_path / f"hall{len(halls)}", stage=stage, ledger_from=ledger_template,
                    card_latency=Latency.instant(), timeouts_ms={**QUICK, **timeouts},
                    serial_gateway=serial_gateway)
        halls.append(hall)
        hall.boot()
        return hall

    yield make
    for hall in halls:
        hall.close()
    for hall in halls:
        assert_nothing_cut_off(hall)


@pytest.fixture
def hall(make_hall: HallFactory) -> Hall:
    return make_hall()


@pytest.fixture(scope="module")
def shared_hall(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                stage: Path, ledger_template: Path) -> Iterator[Hall]:
    """One booted hall for a whole module, whose tests leave the kiosk at its welcome page and
    each settle a bill no other test settles. The module's HALL_TIMEOUTS (ms) are added to the
    QUICK ones."""
    timeouts = {**QUICK, **getattr(request.module, "HALL_TIMEOUTS", {})}
    built = Hall(tmp_path_factory.mktemp("shared") / "hall", stage=stage,
                 ledger_from=ledger_template, card_latency=Latency.instant(),
                 timeouts_ms=timeouts)
    built.boot()
    yield built
    built.close()
    assert_nothing_cut_off(built)


def assert_nothing_cut_off(hall: Hall) -> None:
    """Every screen of every scenario fit the panel: no text the resident could not read."""
    assert not hall.cut_off, f"text cut off on the screen (page, components): {hall.cut_off}"

