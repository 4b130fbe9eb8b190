"""Keys, replay counters, persons, bills and seeded accumulations in the ledger, both backends."""

from __future__ import annotations

from dataclasses import replace

import pytest
from onestop.host.gateway.ledger import BillUnavailable, KeyRecord, LedgerError, open_ledger

KIOSK_KEY = bytes(range(32))


def kiosk_key(kid: str = "kiosk-01", status: str = "active") -> KeyRecord:
    return KeyRecord(kid=kid, role="kiosk", public_key=KIOSK_KEY, status=status)


def test_init_twice_keeps_what_is_there(ledger_url, ledger):
    ledger.add_key(kiosk_key())
    again = open_ledger(ledger_url)
    try:
        again.init()
        assert again.list_keys() == [kiosk_key()]
    finally:
        again.close()


def test_keys_are_listed_gateway_first_and_revoked_ones_stay(ledger):
    gateway = KeyRecord(kid="gw-1a2b3c4d", role="gateway", public_key=b"\x07" * 32, status="active")
    ledger.add_key(replace(kiosk_key("kiosk-02"), public_key=b"\x08" * 32))
    ledger.add_key(gateway)
    ledger.add_key(kiosk_key("kiosk-01"))

    assert ledger.set_key_status("kiosk-02", "revoked")

    assert [(k.kid, k.role, k.status) for k in ledger.list_keys()] == [
        ("gw-1a2b3c4d", "gateway", "active"),
        ("kiosk-01", "kiosk", "active"),
        ("kiosk-02", "kiosk", "revoked"),
    ]
    assert ledger.get_key("kiosk-02").status == "revoked"
    assert ledger.get_key("nobody") is None
    assert not ledger.set_key_status("nobody", "revoked")


def test_adding_a_known_key_again_only_sets_its_status(ledger):
    ledger.add_key(kiosk_key())
    ledger.add_key(kiosk_key())
    ledger.add_key(kiosk_key(status="revoked"))
    assert ledger.list_keys() == [kiosk_key(status="revoked")]
    kinds = [event["kind"] for event in ledger.audit_events()]
    assert kinds == ["key_added", "key_revoked"]


def test_a_key_is_never_swapped_under_a_known_id(ledger):
    ledger.add_key(kiosk_key())
    with pytest.raises(ValueError, match="another key"):
        ledger.add_key(replace(kiosk_key(), public_key=b"\x09" * 32))
    assert ledger.get_key("kiosk-01").public_key == KIOSK_KEY


def test_one_public_key_has_one_holder(ledger):
    ledger.add_key(kiosk_key("kiosk-01", status="revoked"))
    with pytest.raises(ValueError, match="already enrolled as 'kiosk-01'"):
        ledger.add_key(kiosk_key("kiosk-02"))
    assert ledger.get_key("kiosk-02") is None


@pytest.mark.parametrize(
    ("record", "complaint"),
    [
        (replace(kiosk_key(), public_key=b"\x01" * 31), "32 bytes"),
        (replace(kiosk_key(), role="admin"), "role"),
        (replace(kiosk_key(), status="maybe"), "status"),
        (replace(kiosk_key(), alg="ES256"), "EdDSA"),
    ],
)
def test_a_malformed_key_is_refused(ledger, record, complaint):
    with pytest.raises(ValueError, match=complaint):
        ledger.add_key(record)
    assert ledger.list_keys() == []


def test_counters_only_go_up_per_kiosk(ledger):
    assert ledger.advance_counter("kiosk-01", 1)
    assert ledger.advance_counter("kiosk-01", 7)
    assert not ledger.advance_counter("kiosk-01", 7)  # replay
    assert not ledger.advance_counter("kiosk-01", 3)  # older
    assert ledger.advance_counter("kiosk-02", 2)  # another kiosk has its own
    assert ledger.advance_counter("kiosk-01", 8)


def test_a_person_is_found_by_social_security_number_and_card_number(ledger, kit):
    resident = kit.person("P1", 1)
    assert ledger.upsert_person(resident) == "added"
    assert ledger.upsert_person(resident) == "unchanged"
    assert ledger.find_person(resident.ssn, resident.card_no) == resident
    assert ledger.find_person(resident.ssn, "HB9999999") is None  # a card not (or no longer) theirs
    reissued = replace(resident, card_no="HB7777777")
    assert ledger.upsert_person(reissued) == "updated"
    assert ledger.find_person(resident.ssn, resident.card_no) is None
    assert ledger.get_person("P1") == reissued


def test_a_price_reads_the_card_holder_their_bill_and_the_years_accumulations_at_once(
        demo_people, kit):
    ledger, read_at = demo_people, 1_795_400_000
    start = {"serious_burden": 6_000_000}
    ledger.seed_accumulations("P1", kit.YEAR, start)
    ledger.record_card_read(kit.KIOSK, "P1", read_at)
    found = ledger.pricing_inputs(kit.KIOSK, "P1", read_at, "B1", kit.YEAR)
    assert found == (ledger.get_person("P1"), ledger.get_bill("B1"), start)
    # another year has none yet; a bill is given as it is (whose it is, its status) or None
    assert ledger.pricing_inputs(kit.KIOSK, "P1", read_at, "B1", kit.YEAR + 1)[2] == {}
    assert ledger.pricing_inputs(kit.KIOSK, "P1", read_at, "B4", kit.YEAR)[1] == \
        ledger.get_bill("B4")
    assert ledger.pricing_inputs(kit.KIOSK, "P1", read_at, "B9", kit.YEAR)[1:] == (None, start)
    # Not the card this kiosk read last, a read too old, another kiosk: nothing at all
    assert ledger.pricing_inputs(kit.KIOSK, "P2", read_at, "B4", kit.YEAR) is None
    assert ledger.pricing_inputs(kit.KIOSK, "P1", read_at + 1, "B1", kit.YEAR) is None
    assert ledger.pricing_inputs("kiosk-02", "P1", read_at, "B1", kit.YEAR) is None
    assert ledger.pricing_inputs(kit.KIOSK, "P9", read_at, "B1", kit.YEAR) is None


def test_the_audit_log_shows_id_numbers_masked(ledger, kit):
    resident = kit.person("P1", 1)
    ledger.upsert_person(resident)
    bodies = "".join(event["body"] for event in ledger.audit_events())
    assert resident.ssn not in bodies
    assert resident.ssn[:6] + "********" + resident.ssn[-4:] in bodies


def test_bill_import_is_idempotent(ledger, kit):
    ledger.upsert_person(kit.person("P1", 1))
    bill = kit.bill("B1", "P1")
    assert ledger.upsert_bill(bill) == "added"
    assert ledger.upsert_bill(bill) == "unchanged"
    assert ledger.get_bill("B1") == bill
    assert ledger.pending_bills("P1") == [bill]
    assert [e["kind"] for e in ledger.audit_events()] == ["person_added", "bill_imported"]


def test_a_pending_bill_can_be_corrected_by_its_clinic(ledger, kit):
    ledger.upsert_person(kit.person("P1", 1))
    ledger.upsert_bill(kit.bill("B1", "P1"))
    corrected = kit.bill("B1", "P1", amounts=(90_000, 50_000))
    assert ledger.upsert_bill(corrected) == "updated"
    assert ledger.get_bill("B1").medfee_sumamt == 140_000


def test_reimport_never_unsettles_and_a_settled_bill_cannot_change(demo_people, kit):
    kit.settle(demo_people, "T-000001", "P1", "B1")
    assert demo_people.upsert_bill(kit.bill("B1", "P1")) == "unchanged"
    assert demo_people.get_bill("B1").status == "settled"
    with pytest.raises(BillUnavailable, match="already settled"):
        demo_people.upsert_bill(kit.bill("B1", "P1", amounts=(1, 2)))
    assert demo_people.get_bill("B1").medfee_sumamt == 150_000


def test_a_bill_of_an_unknown_person_is_refused(ledger, kit):
    with pytest.raises(ValueError, match="unknown person"):
        ledger.upsert_bill(kit.bill("B1", "NOBODY"))
    assert ledger.get_bill("B1") is None


def test_starting_accumulations_are_seeded_once_and_audited(demo_people, kit):
    start = {"serious_burden": 6_000_000, "assistance_burden": 2_000_000}
    assert demo_people.seed_accumulations("P1", kit.YEAR, start)
    assert not demo_people.seed_accumulations("P1", kit.YEAR, start)  # same values: no-op
    assert demo_people.accumulations("P1", kit.YEAR) == start

    seen: list[dict[str, int]] = []
    digest = kit.digest("T-000001")
    demo_people.settle(
        "T-000001", digest, kit.KIOSK, "P1", "B1", kit.build("T-000001", digest, seen=seen)
    )
    assert seen == [start]  # the engine sees the seeded burden
    with pytest.raises(ValueError, match="already has accumulations"):
        demo_people.seed_accumulations("P1", kit.YEAR, {"serious_burden": 1})
    kinds = [e["kind"] for e in demo_people.audit_events()]
    assert kinds.count("accumulations_seeded") == 1


@pytest.mark.parametrize("amounts", [{"serious_burden": -1}, {"serious_burden": 1.5}])
def test_seeded_accumulations_must_be_fen(demo_people, kit, amounts):
    with pytest.raises(ValueError, match="non-negative integer"):
        demo_people.seed_accumulations("P1", kit.YEAR, amounts)
    assert demo_people.accumulations("P1", kit.YEAR) == {}


def test_an_uninitialised_ledger_says_to_run_init(ledger_url):
    fresh = open_ledger(ledger_url)
    try:
        with pytest.raises(LedgerError, match="kiosk gateway init"):
            fresh.list_keys()
    finally:
        fresh.close()


def test_a_new_sqlite_ledger_is_readable_by_its_owner_only(tmp_path, kit):
    # it holds residents' names and ID numbers; SQLite's -wal and -shm files follow its mode
    path = tmp_path / "ledger.sqlite"
    ledger = open_ledger(f"sqlite:///{path}")
    try:
        ledger.init()
        ledger.upsert_person(kit.person("P1", 1))
        files = [path, path.with_name("ledger.sqlite-wal"), path.with_name("ledger.sqlite-shm")]
        assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == {
            f.name: "0o600" for f in files}
        assert ledger.exposure() is None
        path.chmod(0o644)  # as an earlier version made it: the gateway says so when it serves
        assert f"chmod 600 {path}" in ledger.exposure()
    finally:
        ledger.close()


def test_a_ledger_made_again_at_the_same_path_is_private_too(tmp_path):
    # the same process making a ledger, removing it and making it again (a test, a re-install)
    path = tmp_path / "ledger.sqlite"
    for _ in range(2):
        with open_ledger(f"sqlite:///{path}") as ledger:
            ledger.init()
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        for made in tmp_path.iterdir():
            made.unlink()


def test_serving_gateways_record_what_they_settle_by_one_row_each(ledger) -> None:
    ledger.record_serving("gw-a@host1", '{"timezone": "Asia/Shanghai"}', 1_000)
    ledger.record_serving("gw-b@host2", '{"timezone": "UTC"}', 1_005)
    ledger.record_serving("gw-a@host1", '{"timezone": "Asia/Shanghai"}', 1_010)  # refreshed
    assert ledger.serving_records() == {
        "gw-a@host1": ('{"timezone": "Asia/Shanghai"}', 1_010),
        "gw-b@host2": ('{"timezone": "UTC"}', 1_005),
    }
    ledger.check_schema()  # beside the schema version, which it leaves alone


def test_a_ledger_reached_through_a_symbolic_link_is_private_and_durable(tmp_path, kit):
    """An operator's ledger path that is a link to where the file will be: SQLite followed it
    and made the file with the umask's mode (names and full ID numbers readable by all), and the
    durable flush looked for the -wal file beside the link: every write said it had failed."""
    target = tmp_path / "data" / "ledger.sqlite"
    target.parent.mkdir()
    link = tmp_path / "ledger.sqlite"
    link.symlink_to(target)
    ledger = open_ledger(f"sqlite:///{link}")
    try:
        ledger.init()
        ledger.upsert_person(kit.person("P1", 1))  # a durable write: it used to raise
        assert oct(target.stat().st_mode & 0o777) == "0o600"
        assert oct(target.with_name("ledger.sqlite-wal").stat().st_mode & 0o777) == "0o600"
    finally:
        ledger.close()
    assert link.is_symlink()  # left as the operator made it
