"""Gateway key rotation at the kiosk (firmware/app/link.py under MicroPython, precompiled): a
sign_in_reply carrying a cert of the operator's authority with a higher serial moves the kiosk
to the cert's key, kept on the flash (app.config.trusted_gateway); the old key is refused from
then on; a cert of a lower or the same serial, or not the authority's, changes nothing; and a
reply to another request signed by a key the kiosk does not know yet makes it sign in again
(learning the cert) and send the request again, so the resident's visit goes on."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import make_vectors
import pytest
from onestop.host.fwtools import StageWorker, compile_modules, stage_firmware
from onestop.host.keys import SigningKey, VerifyingKey
from onestop.protocol import framing, messages
from threaded_gateway import ThreadedGateway

SUPPORT = Path(__file__).parent / "support"
KIOSK = "K0001"
KIOSK_SEED = bytes(range(1, 33))
NOW = 1795000000
AUTHORITY = SigningKey(bytes(range(50, 82)))
AUTHORITY_KID = "auth-test"
OLD = SigningKey(bytes(range(2, 34)))
NEW = SigningKey(bytes(range(3, 35)))
NEWER = SigningKey(bytes(range(4, 36)))
SIGN_IN = ("sign_in", {"fw": "test", "board": "unix"})
PERSON_INFO = ("person_info", {"card": make_vectors.CARD})


def cert(kid: str, key: SigningKey, serial: int, authority: SigningKey = AUTHORITY,
         authority_kid: str = AUTHORITY_KID) -> bytes:
    return messages.seal_cert({"kid": kid, "key": key.public_key, "serial": serial},
                              authority_kid, authority)


class Identity:
    """Who the gateway signs as: kid, key, and the cert it sends at sign-in (or None)."""

    def __init__(self, kid: str, key: SigningKey, cert: bytes | None = None) -> None:
        self.kid, self.key, self.cert = kid, key, cert


class RotatingGateway(ThreadedGateway):
    """A TCP gateway answering sign_in and person_info, each answer signed as the next of
    `script` (the last one once the script is used up)."""

    def __init__(self, script: list[Identity]) -> None:
        self.script = list(script)
        self.requests: list[str] = []
        super().__init__(VerifyingKey(SigningKey(KIOSK_SEED).public_key))

    async def answer(self, request: dict[str, Any], writer: asyncio.StreamWriter) -> bool:
        self.requests.append(request["t"])
        who = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if request["t"] == "sign_in":
            body: dict[str, Any] = {"sign_no": "S1", "now": NOW, "gateway": who.kid,
                                    "policy": "test"}
            if who.cert is not None:
                body["cert"] = who.cert
        else:
            body = {k: v for k, v in dict(make_vectors.VALID_MESSAGES)[
                "person_info_reply"].items() if k not in ("v", "t", "kiosk", "ctr", "rid", "ts")}
        answer = messages.reply(request, request["t"] + "_reply", NOW, **body)
        writer.write(framing.encode(messages.seal(answer, who.kid, who.key)))
        await writer.drain()
        return True


@pytest.fixture(scope="module")
def mp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StageWorker]:
    stage = stage_firmware(tmp_path_factory.mktemp("fw") / "stage", "unix", compiled=True,
                           tables=False)
    helpers = compile_modules([SUPPORT / "app_link.py"], tmp_path_factory.mktemp("helpers"))
    worker = StageWorker(stage, [helpers], heapsize="320K")
    yield worker
    worker.close()


def run(mp: StageWorker, flash: Path, script: list[Identity], requests: list[Any],
        pinned: Identity, serial: int = 0, authority: bool = True,
        **more: Any) -> tuple[dict, list[str]]:
    """The kiosk (its flash in `flash`, pinned at provisioning to `pinned` with `serial`)
    making `requests`; its results and what the gateway was asked."""
    gateway = RotatingGateway(script)
    spec: dict[str, Any] = dict(
        port=gateway.port, dir=str(flash), kiosk=KIOSK, seed=KIOSK_SEED,
        gateway_kid=pinned.kid, gateway_public=pinned.key.public_key.hex(), serial=serial,
        requests=requests, timeouts={"gateway_reply": 300, "gateway_attempts": 2}, **more)
    if authority:
        spec.update(authority_kid=AUTHORITY_KID, authority_public=AUTHORITY.public_key.hex())
    try:
        return mp.call("app_link", "run", spec), gateway.requests
    finally:
        gateway.close()


OLD_ID = Identity("gw-old", OLD)
NEW_ID = Identity("gw-new", NEW, cert("gw-new", NEW, 1))


def test_a_certified_new_key_is_learnt_at_sign_in_kept_and_the_old_one_refused(
        mp: StageWorker, tmp_path: Path) -> None:
    result, _ = run(mp, tmp_path, [NEW_ID, OLD_ID], [SIGN_IN, SIGN_IN], pinned=OLD_ID)
    # the reply signed by the key the kiosk did not know, believed for its cert
    assert result["results"] == [{"t": "sign_in_reply", "ctr": 1}, {"untrusted": True}]
    assert result["trusted"] == ["gw-new", 1]
    assert result["kept"] == ["gw-new", NEW.public_key.hex(), 1]  # a reboot keeps it
    changed = [e for e in result["rotation"] if e["event"] == "gateway_key_changed"]
    assert changed == [{"event": "gateway_key_changed", "old_kid": "gw-old", "old_serial": 0,
                        "kid": "gw-new", "serial": 1}]
    # after a reboot: the new key from the flash; the old one is still refused
    result, _ = run(mp, tmp_path, [OLD_ID], [SIGN_IN], pinned=OLD_ID)
    assert result["results"] == [{"untrusted": True}]
    # a settlement the old key signed before the rotation (a txn in doubt across it, asked
    # about again) still opens, in a reply the new key signed; one of another key does not
    signed = {name: messages.seal_settlement(dict(make_vectors.RECORD, setl_id=name), kid, key)
              for name, kid, key in (("S-OLD", "gw-old", OLD), ("S-NEW", "gw-new", NEW),
                                     ("S-NEWER", "gw-old", NEWER))}
    result, _ = run(mp, tmp_path, [NEW_ID], [SIGN_IN], pinned=OLD_ID,
                    settlements=list(signed.values()))
    assert result["results"] == [{"t": "sign_in_reply", "ctr": result["results"][0]["ctr"]}]
    assert result["rotation"] == []  # the cert of the key it trusts: nothing to do
    assert result["opened"] == ["S-OLD", "S-NEW", "bad_signature"]


def test_a_cert_of_a_lower_or_equal_serial_or_another_signer_changes_nothing(
        mp: StageWorker, tmp_path: Path) -> None:
    current = Identity("gw-new", NEW)
    stale = [
        # signed by the trusted key, with certs for another key that are no newer
        Identity("gw-new", NEW, cert("gw-newer", NEWER, 2)),
        Identity("gw-new", NEW, cert("gw-newer", NEWER, 2)),  # at each sign-in: logged once
        Identity("gw-new", NEW, cert("gw-newer", NEWER, 1)),
    ]
    result, _ = run(mp, tmp_path, stale, [SIGN_IN] * 3, pinned=current, serial=2)
    assert [r.get("t") for r in result["results"]] == ["sign_in_reply"] * 3
    assert result["trusted"] == ["gw-new", 2]
    assert [(e["event"], e["reason"], e["serial"]) for e in result["rotation"]] == [
        ("gateway_cert_refused", "old_serial", 2), ("gateway_cert_refused", "old_serial", 1)]
    strangers = [
        Identity("gw-newer", NEWER, cert("gw-newer", NEWER, 1)),  # signed by an unknown key
        Identity("gw-newer", NEWER, cert("gw-newer", NEWER, 3, SigningKey(bytes(32)))),
        Identity("gw-newer", NEWER, cert("gw-newer", NEWER, 3, NEW, "gw-new")),
    ]
    for stranger in strangers:
        result, _ = run(mp, tmp_path, [stranger], [SIGN_IN], pinned=current, serial=2)
        assert result["results"] == [{"untrusted": True}]
        assert result["trusted"] == ["gw-new", 2]
        assert result["kept"][0] == "gw-new"
        assert [e["event"] for e in result["rotation"]] == ["gateway_cert_refused"]


def test_a_reply_signed_by_an_unknown_key_makes_the_kiosk_sign_in_and_go_on(
        mp: StageWorker, tmp_path: Path) -> None:
    """The gateway was rotated between the kiosk's sign-in and the resident's card."""
    result, asked = run(mp, tmp_path, [OLD_ID, NEW_ID], [SIGN_IN, PERSON_INFO], pinned=OLD_ID)
    assert [r.get("t") for r in result["results"]] == ["sign_in_reply", "person_info_reply"]
    assert asked == ["sign_in", "person_info", "sign_in", "person_info"]
    assert result["trusted"] == ["gw-new", 1]
    assert result["stats"]["retries"] == 0


def test_without_the_authority_a_new_key_stays_untrusted(mp: StageWorker,
                                                         tmp_path: Path) -> None:
    result, asked = run(mp, tmp_path, [OLD_ID, NEW_ID], [SIGN_IN, PERSON_INFO],
                        pinned=OLD_ID, authority=False)
    assert result["results"][1] == {"untrusted": True}
    assert asked == ["sign_in", "person_info", "person_info"]
    assert result["trusted"] == ["gw-old", 0]


def test_the_pinned_key_certified_later_raises_the_serial_only(mp: StageWorker,
                                                               tmp_path: Path) -> None:
    """The operator makes the authority after the kiosks were provisioned and certifies the key
    they pin: the kiosk takes the serial (a replayed lower cert is refused from then on)."""
    certified = Identity("gw-old", OLD, cert("gw-old", OLD, 1))
    result, _ = run(mp, tmp_path, [certified], [SIGN_IN, SIGN_IN], pinned=OLD_ID)
    assert [r.get("t") for r in result["results"]] == ["sign_in_reply"] * 2
    assert result["trusted"] == ["gw-old", 1]
    assert result["kept"] == ["gw-old", OLD.public_key.hex(), 1]
    assert [(e["event"], e["old_kid"], e["kid"], e["serial"]) for e in result["rotation"]] == [
        ("gateway_key_changed", "gw-old", "gw-old", 1)]  # once: then it is the trusted cert
