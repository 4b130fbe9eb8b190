"""Off-site residents settled under their enrolment region's policy (异地就医: the catalogue of
the place of treatment, the policy of the place of enrolment), through the real handlers on both
ledger backends. The regional policies are test-only copies of the reference policy with other
numbers; the demo's P006 is insured in 410102 and treated here (130630), P001 is local.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from onestop.host.gateway.audit import audit
from onestop.host.gateway.bills import seed_demo
from onestop.host.gateway.handlers import Handled, Handlers
from onestop.host.gateway.ledger import Ledger
from onestop.host.keys import SigningKey
from onestop.host.settlement import Claim, Policy, load_policy, policy_digest, settle
from onestop.protocol import messages
from onestop.protocol.errors import ProtocolError
from test_handlers import card_of_person, enrol_signer

TZ = ZoneInfo("Asia/Shanghai")
NOW = int(datetime(2026, 11, 23, 10, 0, tzinfo=TZ).timestamp())
TODAY = "2026-11-23"
GATEWAY_KID = "gateway-test"
OFFSITE = ("P006", "B-130630-0006")  # insured in 410102, treated at a level-2 hospital here
LOCAL = ("P001", "B-130630-0001")  # insured and treated in 130630
TO_BEIJING = ("P002", "B-110102-0002")  # insured in 130630, treated at a level-3 hospital in 110102


def regional_policy(folder: Path, name: str, regions: list[str] | None,
                    deductible_fen: int = 90_000, ratio_percent: int = 65,
                    cut_without_referral: int = 20, preselfpay_percent: int = 10) -> str:
    """A copy of the reference policy named `name`, governing `regions`, with its own level-2
    inpatient deductible and ratio, its own off-site cut (without referral) and its own
    catalogue's class-B share paid first: its path."""
    text = (resources.files("onestop.host.settlement") / "policies" / "reference.toml"
            ).read_text(encoding="utf-8")
    about = f'name = "{name}"' + (f"\nregions = {regions!r}".replace("'", '"') if regions else "")
    for pattern, replacement in (
        (r'^name = "reference"$', about),
        (r"\{ level = 2, deductible_fen = 60_000, ratio_percent = 70 \}",
         f"{{ level = 2, deductible_fen = {deductible_fen}, ratio_percent = {ratio_percent} }}"),
        (r"^cut_points_without_referral = 15$",
         f"cut_points_without_referral = {cut_without_referral}"),
        (r"^class_b_preselfpay_percent = 10$",
         f"class_b_preselfpay_percent = {preselfpay_percent}"),
    ):
        text, found = re.subn(pattern, replacement, text, count=1, flags=re.MULTILINE)
        assert found == 1, f"reference.toml changed: {pattern} not found"
    path = folder / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


class Rig:
    """Handlers loaded with `policies`, on the demo residents, asked as a kiosk asks."""

    def __init__(self, ledger: Ledger, policies: list[str]) -> None:
        self.ledger = ledger
        self.key = SigningKey.generate()
        self.handlers = Handlers(self.key, GATEWAY_KID, policies, TZ)
        enrol_signer(ledger, GATEWAY_KID, self.key)
        seed_demo(ledger)
        self._ctr = 0

    def ask(self, t: str, **body: Any) -> Handled:
        self._ctr += 1
        request = messages.validate(
            messages.request(t, "K-01", self._ctr, os.urandom(8), NOW, **body))
        handled = self.handlers.handle(self.ledger, request, NOW)
        messages.seal(handled.reply, GATEWAY_KID, self.key)  # raises unless frames.cddl-valid
        return handled

    def settle(self, psn_no: str, bill_id: str, txn_id: str) -> tuple[dict[str, int], Handled]:
        """The pre-settlement the resident is shown, and the settle that confirms it."""
        self.ask("person_info", card=card_of_person(self.ledger, psn_no))
        pre = self.ask("pre_settle", psn_no=psn_no, bill_id=bill_id).reply["result"]
        settled = self.ask("settle", psn_no=psn_no, bill_id=bill_id, txn_id=txn_id,
                           confirmed_cash=pre["psn_cash_pay"])
        return pre, settled

    def expected(self, policy: str | Policy, psn_no: str, bill_id: str) -> dict[str, int]:
        """What the engine computes for the bill under that policy (or the path to it), run
        directly (before the bill is settled: on the resident's accumulations without it)."""
        person, bill = self.ledger.get_person(psn_no), self.ledger.get_bill(bill_id)
        claim = Claim.from_bill(person, bill, TODAY)
        accumulations = self.ledger.accumulations(psn_no, claim.year)
        if not isinstance(policy, Policy):
            policy = load_policy(policy)
        return dict(settle(policy, claim, accumulations).breakdown)


def test_an_offsite_resident_is_settled_under_the_policy_of_the_region_insured_in(
    ledger: Ledger, tmp_path: Path
) -> None:
    henan = regional_policy(tmp_path, "test-4101", ["4101"])
    rig = Rig(ledger, ["reference", henan])
    wanted = rig.expected(henan, *OFFSITE)
    # its deductible (900 yuan), its ratio 65 % less its own 20-point cut without a referral;
    # the local policy would pay 600 yuan deductible, 70 % less 15 points
    assert (wanted["act_pay_dedc"], wanted["hifp_pay"]) == (90_000, 486_000)
    assert rig.expected("reference", *OFFSITE)["hifp_pay"] == 610_500
    pre, settled = rig.settle(*OFFSITE, txn_id="TXN-0000006")
    assert pre == wanted
    assert rig.ledger.get_settlement("TXN-0000006").result == wanted
    assert settled.fields["policy"] == "test-4101"


def test_a_local_resident_is_still_settled_under_the_default_policy(
    ledger: Ledger, tmp_path: Path
) -> None:
    rig = Rig(ledger, ["reference", regional_policy(tmp_path, "test-4101", ["4101"])])
    wanted = rig.expected("reference", *LOCAL)
    pre, settled = rig.settle(*LOCAL, txn_id="TXN-0000001")
    assert pre == wanted
    assert pre["psn_cash_pay"] == 908_000  # the worked example
    assert settled.fields["policy"] == "reference"


def test_the_most_specific_region_wins(ledger: Ledger, tmp_path: Path) -> None:
    province = regional_policy(tmp_path, "test-41", ["41"], 10_000, 50)
    county = regional_policy(tmp_path, "test-410102", ["410102"], 30_000, 55)
    city = regional_policy(tmp_path, "test-4101", ["4101"], 20_000, 60)
    rig = Rig(ledger, ["reference", province, county, city])
    wanted = rig.expected(county, *OFFSITE)
    pre, settled = rig.settle(*OFFSITE, txn_id="TXN-0000006")
    assert pre == wanted
    assert pre["act_pay_dedc"] == 30_000
    assert settled.fields["policy"] == "test-410102"


def test_a_resident_of_a_region_no_policy_covers_is_refused_and_nothing_is_written(
    ledger: Ledger, tmp_path: Path
) -> None:
    rig = Rig(ledger, [regional_policy(tmp_path, "test-4101", ["4101"])])  # no default
    rig.ask("person_info", card=card_of_person(ledger, LOCAL[0]))
    with pytest.raises(ProtocolError) as caught:
        rig.ask("pre_settle", psn_no=LOCAL[0], bill_id=LOCAL[1])
    # "invalid": the kiosk shows its service-refused page, and the counter settles the bill
    assert caught.value.code == "invalid"
    assert "region 130630" in caught.value.msg
    with pytest.raises(ProtocolError) as caught:
        rig.ask("settle", psn_no=LOCAL[0], bill_id=LOCAL[1], txn_id="TXN-0000001",
                confirmed_cash=908_000)
    assert caught.value.code == "invalid"
    assert rig.ledger.get_settlement("TXN-0000001") is None
    assert rig.ledger.get_bill(LOCAL[1]).status == "pending"
    # the region it covers is still settled
    rig.settle(*OFFSITE, txn_id="TXN-0000006")


def test_sign_in_names_every_policy_given_by_its_name_not_its_path(
    ledger: Ledger, tmp_path: Path
) -> None:
    # a kiosk is told which policies settle, not where this host keeps their files
    henan = regional_policy(tmp_path, "test-4101", ["4101"])
    hebei = regional_policy(tmp_path, "test-default", None)
    rig = Rig(ledger, [henan, hebei])
    assert rig.handlers.policy_name == "test-4101, test-default"  # the start-up log's too
    assert rig.ask("sign_in", fw="1.0.0", board="esp32s3").reply["policy"] == \
        "test-4101, test-default"


def test_sign_in_names_a_single_policy_file_by_its_name(ledger: Ledger, tmp_path: Path) -> None:
    rig = Rig(ledger, [regional_policy(tmp_path, "test-default", None)])
    assert rig.ask("sign_in", fw="1.0.0", board="esp32s3").reply["policy"] == "test-default"


# ---------------------------------------------------------------- the catalogue: treatment's


def test_an_offsite_resident_pays_the_class_b_share_of_the_place_of_treatment(
    ledger: Ledger, tmp_path: Path
) -> None:
    # Zhengzhou's catalogue has 30 % of class B paid first; P006 was treated here, under the
    # reference's catalogue (10 %), and is otherwise settled under Zhengzhou's policy
    henan = regional_policy(tmp_path, "test-4101", ["4101"], preselfpay_percent=30)
    rig = Rig(ledger, ["reference", henan])
    wanted = rig.expected(replace(load_policy(henan), class_b_preselfpay_percent=10), *OFFSITE)
    # 10 % of 3,000 yuan of class B; 900 yuan deductible; 65 % less 20 points of the rest
    assert (wanted["preselfpay_amt"], wanted["act_pay_dedc"]) == (30_000, 90_000)
    assert wanted["hifp_pay"] == 486_000
    assert rig.expected(henan, *OFFSITE)["preselfpay_amt"] == 90_000  # its own catalogue's
    pre, settled = rig.settle(*OFFSITE, txn_id="TXN-0000006")
    assert pre == wanted
    assert rig.ledger.get_settlement("TXN-0000006").result == wanted
    assert settled.fields["policy"] == "test-4101"  # the enrolment region's policy


def test_a_local_resident_treated_in_another_policys_region_pays_its_class_b_share(
    ledger: Ledger, tmp_path: Path
) -> None:
    # P002 is insured here (the reference) and treated in Beijing, whose policy has 25 % of
    # class B paid first and its own deductible and ratio, which are not P002's
    beijing = regional_policy(tmp_path, "test-11", ["11"], deductible_fen=10_000,
                              ratio_percent=95, preselfpay_percent=25)
    rig = Rig(ledger, ["reference", beijing])
    wanted = rig.expected(replace(load_policy("reference"), class_b_preselfpay_percent=25),
                          *TO_BEIJING)
    assert wanted["preselfpay_amt"] == 1_000_000  # 25 % of 40,000 yuan of class B
    assert rig.expected("reference", *TO_BEIJING)["preselfpay_amt"] == 400_000
    pre, settled = rig.settle(*TO_BEIJING, txn_id="TXN-0000002")
    assert pre == wanted
    assert rig.ledger.get_settlement("TXN-0000002").result == wanted
    assert settled.fields["policy"] == "reference"


def test_one_policy_settles_as_it_alone_always_did(ledger: Ledger) -> None:
    rig = Rig(ledger, ["reference"])
    for (psn_no, bill_id), txn_id in ((LOCAL, "TXN-0000001"), (TO_BEIJING, "TXN-0000002"),
                                      (OFFSITE, "TXN-0000006")):
        wanted = rig.expected("reference", psn_no, bill_id)
        pre, _ = rig.settle(psn_no, bill_id, txn_id=txn_id)
        assert pre == wanted
        assert rig.ledger.get_settlement(txn_id).result == wanted


# ---------------------------------------------------------------- the rules a settlement records


def test_each_settlement_records_the_policies_it_was_settled_by(
    ledger: Ledger, tmp_path: Path
) -> None:
    # A dispute months later: which rules computed this? The settled event names the enrolment
    # region's policy and, for treatment under another policy's catalogue, that one too, each
    # with the digest `kiosk policy show` prints for it.
    henan = regional_policy(tmp_path, "test-4101", ["4101"], preselfpay_percent=30)
    beijing = regional_policy(tmp_path, "test-11", ["11"], preselfpay_percent=25)
    rig = Rig(ledger, ["reference", henan, beijing])
    digest = {name: policy_digest(load_policy(source)) for name, source in (
        ("reference", "reference"), ("test-4101", henan), ("test-11", beijing))}
    assert len(set(digest.values())) == 3
    rig.settle(*LOCAL, txn_id="TXN-0000001")
    rig.settle(*TO_BEIJING, txn_id="TXN-0000002")
    rig.settle(*OFFSITE, txn_id="TXN-0000006")
    assert ledger.settled_event("TXN-0000001")["policy"] == {
        "name": "reference", "digest": digest["reference"]}
    assert ledger.settled_event("TXN-0000002")["policy"] == {
        "name": "reference", "digest": digest["reference"],
        "catalogue": "test-11", "catalogue_digest": digest["test-11"]}
    # P006 is insured in Henan and treated here: Henan's rules, the reference's catalogue
    assert ledger.settled_event("TXN-0000006")["policy"] == {
        "name": "test-4101", "digest": digest["test-4101"],
        "catalogue": "reference", "catalogue_digest": digest["reference"]}
    assert ledger.settled_event("TXN-NEVER") is None
    report = audit(ledger)  # the table has no policy column: the audit still matches rows
    assert report.ok, report.problems


def test_a_retry_answers_with_the_first_settlement_and_its_recorded_rules(
    ledger: Ledger, tmp_path: Path
) -> None:
    # The gateway restarted with another policy file of the same name between a settle and
    # its retry: the retry gets the stored settlement, and the ledger still says what made it.
    rig = Rig(ledger, ["reference"])
    rig.settle(*LOCAL, txn_id="TXN-0000001")
    first = ledger.settled_event("TXN-0000001")["policy"]
    changed = regional_policy(tmp_path, "reference", None, deductible_fen=1)
    rig.handlers = Handlers(rig.key, GATEWAY_KID, [changed], TZ)
    stored = ledger.get_settlement("TXN-0000001")
    retried = rig.ask("settle", psn_no=LOCAL[0], bill_id=LOCAL[1], txn_id="TXN-0000001",
                      confirmed_cash=stored.result["psn_cash_pay"])
    assert retried.reply["settlement"] == stored.signed
    assert ledger.settled_event("TXN-0000001")["policy"] == first
    assert first["digest"] == policy_digest(load_policy("reference"))
    assert first["digest"] != policy_digest(load_policy(changed))
