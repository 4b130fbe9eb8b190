"""Messages: frames.cddl enforced on both runtimes, sealed on one and opened on the other."""

import re

import cbor2
import make_vectors
import pycddl
import pytest
from cddl_schema import FRAMES_CDDL, check, leaf_rules, message_map_rules
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onestop.protocol import messages
from onestop.protocol.errors import ProtocolError

KIOSK = make_vectors.KIOSK
GATEWAY = make_vectors.GATEWAY_KID
SEEDS = {KIOSK: make_vectors.KIOSK_SEED, GATEWAY: make_vectors.GATEWAY_SEED}
PUBS = {kid: make_vectors.public_key(seed) for kid, seed in SEEDS.items()}
EXAMPLES = make_vectors.VALID_MESSAGES
SETTLE = dict(EXAMPLES)["settle"]
RID = make_vectors.RID


def signer_of(msg):
    return KIOSK if msg["t"] in messages.REQUESTS else GATEWAY


def reason(exc):
    """The error's text without a leading "code: " (the MicroPython worker sends str(exc))."""
    prefix = exc.code + ": "
    return exc.msg[len(prefix):] if exc.msg.startswith(prefix) else exc.msg


# ---------------------------------------------------------------- sealed across runtimes
@pytest.mark.parametrize("name, msg", EXAMPLES, ids=[n for n, _ in EXAMPLES])
def test_sealed_on_micropython_opens_on_cpython(micropython_worker, name, msg):
    kid = signer_of(msg)
    data = micropython_worker.call("sig_keys", "seal", msg, kid, SEEDS[kid])
    from sig_keys import open as open_sealed

    assert open_sealed(data, PUBS) == (kid, msg)


@pytest.mark.parametrize("name, msg", EXAMPLES, ids=[n for n, _ in EXAMPLES])
def test_sealed_on_cpython_opens_on_micropython(micropython_worker, name, msg):
    from sig_keys import seal

    kid = signer_of(msg)
    data = seal(msg, kid, SEEDS[kid])
    assert micropython_worker.call("sig_keys", "open", data, PUBS) == (kid, msg)


def test_the_kiosk_checks_the_gateways_settlement_with_the_pinned_key(runtime):
    record = make_vectors.RECORD
    signed = runtime.call("sig_keys", "seal_settlement", record, GATEWAY, SEEDS[GATEWAY])
    assert runtime.call("sig_keys", "open_settlement", signed, PUBS[GATEWAY]) == record
    with pytest.raises(ProtocolError) as info:
        runtime.call("sig_keys", "open_settlement", signed, PUBS[KIOSK])
    assert info.value.code == "bad_signature"


def test_an_invalid_settlement_record_is_neither_signed_nor_accepted(runtime):
    record = dict(make_vectors.RECORD, setl_time=-1)
    with pytest.raises(ProtocolError) as info:
        runtime.call("sig_keys", "seal_settlement", record, GATEWAY, SEEDS[GATEWAY])
    assert (info.value.code, reason(info.value)) == ("invalid",
                                                     "settlement_record.setl_time: expected "
                                                     "an unsigned integer")
    signed = make_vectors.sign1(cbor2.dumps(record, canonical=True), GATEWAY, SEEDS[GATEWAY])
    with pytest.raises(ProtocolError) as info:
        runtime.call("sig_keys", "open_settlement", signed, PUBS[GATEWAY])
    assert info.value.code == "invalid"


def test_a_gateway_cert_is_signed_by_the_authority_and_checked_on_either_runtime(runtime):
    authority = bytes(range(7, 39))
    record = {"kid": "gw-next", "key": PUBS[GATEWAY], "serial": 2}
    signed = runtime.call("sig_keys", "seal_cert", record, "auth-1", authority)
    pub = make_vectors.public_key(authority)
    assert runtime.call("sig_keys", "open_cert", signed, "auth-1", pub) == record
    for kid, key in (("auth-1", PUBS[KIOSK]), ("auth-2", pub)):  # another key, another kid
        with pytest.raises(ProtocolError) as info:
            runtime.call("sig_keys", "open_cert", signed, kid, key)
        assert info.value.code == "bad_signature"
    with pytest.raises(ProtocolError) as info:
        runtime.call("sig_keys", "seal_cert", dict(record, key=b"short"), "auth-1", authority)
    assert (info.value.code, reason(info.value)) == ("invalid",
                                                     "gateway_cert.key: expected 32 bytes")


def test_a_sign_in_reply_may_carry_the_gateways_cert():
    reply = dict(dict(EXAMPLES)["sign_in_reply"], cert=b"\xd2" * 40)
    assert messages.validate(reply) is reply
    check("sign_in_reply", cbor2.dumps(reply, canonical=True))  # frames.cddl agrees
    with pytest.raises(ProtocolError):
        messages.validate(dict(reply, cert="text"))


# ---------------------------------------------------------------- open refuses
def test_an_unknown_signer_is_refused(runtime):
    data = runtime.call("sig_keys", "seal", SETTLE, KIOSK, SEEDS[KIOSK])
    with pytest.raises(ProtocolError) as info:
        runtime.call("sig_keys", "open", data, {GATEWAY: PUBS[GATEWAY]})
    assert info.value.code == "unknown_kiosk"


def test_a_key_lookup_returning_nothing_means_unknown_kiosk():
    from sig_keys import seal

    with pytest.raises(ProtocolError) as info:
        messages.open(seal(SETTLE, KIOSK, SEEDS[KIOSK]), lambda kid: None)
    assert info.value.code == "unknown_kiosk"


def test_a_request_signed_by_another_kiosk_is_refused(runtime):
    impostor = dict(SETTLE, kiosk="HALL-0102")
    data = runtime.call("sig_keys", "seal", impostor, KIOSK, SEEDS[KIOSK])
    with pytest.raises(ProtocolError) as info:
        runtime.call("sig_keys", "open", data, PUBS)
    assert info.value.code == "invalid"
    assert reason(info.value) == "settle.kiosk: differs from the signer's kid"


def test_a_reply_is_signed_by_the_gateway_not_the_kiosk_it_names(runtime):
    msg = dict(EXAMPLES)["settle_reply"]
    data = runtime.call("sig_keys", "seal", msg, GATEWAY, SEEDS[GATEWAY])
    assert runtime.call("sig_keys", "open", data, PUBS) == (GATEWAY, msg)


def test_a_newer_major_version_gets_its_own_error_code(runtime):
    future = dict(SETTLE, v=[2, 0], new_field="?")
    data = make_vectors.sign1(cbor2.dumps(future, canonical=True), KIOSK, SEEDS[KIOSK])
    with pytest.raises(ProtocolError) as info:
        runtime.call("sig_keys", "open", data, PUBS)
    assert info.value.code == "unsupported_version"


@pytest.mark.parametrize("t, body", [
    ("sign_in fw:tstr", {"board": "unix"}),
    ("settle psn_no:%psn bill_id:tstr", {"txn_id": "T-HALL0101-000041", "confirmed_cash": 0}),
    ("settlement_query_reply txn_id:%txn", {"status": "settled"}),
    ("pending_bills ", {"psn_no": "P1"}),
], ids=["sign_in", "settle", "query_reply", "trailing_space"])
def test_a_type_is_a_whole_name_not_the_head_of_a_line_of_the_spec(runtime, t, body):
    # validate found a type's fields by the first spec entry starting with `t`: a type that
    # ran on into the entry's field list ("sign_in fw:tstr") was checked against the fields
    # after it only, and a signed frame frames.cddl refuses was accepted.
    msg = dict({k: SETTLE[k] for k in ("v", "kiosk", "ctr", "rid", "ts")}, t=t, **body)
    assert not cddl_accepts(msg)
    data = make_vectors.sign1(cbor2.dumps(msg, canonical=True), KIOSK, SEEDS[KIOSK])
    with pytest.raises(ProtocolError) as info:
        runtime.call("sig_keys", "open", data, PUBS)
    assert info.value.code == "invalid" and reason(info.value).startswith("message.t: ")


def test_a_tampered_frame_is_refused_before_its_content_is_read(runtime):
    data = bytearray(runtime.call("sig_keys", "seal", SETTLE, KIOSK, SEEDS[KIOSK]))
    data[-70] ^= 0x01  # inside the payload
    with pytest.raises(ProtocolError) as info:
        runtime.call("sig_keys", "open", bytes(data), PUBS)
    assert info.value.code == "bad_signature"


def test_an_invalid_message_is_not_sealed(runtime):
    with pytest.raises(ProtocolError) as info:
        runtime.call("sig_keys", "seal", dict(SETTLE, confirmed_cash=-100), KIOSK, SEEDS[KIOSK])
    assert (info.value.code, reason(info.value)) == (
        "invalid", "settle.confirmed_cash: negative fen")


# ---------------------------------------------------------------- building
def test_a_request_carries_the_header_and_body(runtime):
    msg = runtime.call("proto_calls", "build_request", "pre_settle", KIOSK, 42, RID, 1000,
                       {"psn_no": "P1", "bill_id": "B1"})
    assert msg == {"v": [1, 0], "t": "pre_settle", "kiosk": KIOSK, "ctr": 42, "rid": RID,
                   "ts": 1000, "psn_no": "P1", "bill_id": "B1"}
    assert runtime.call("onestop.protocol.messages", "validate", msg) == msg


def test_a_body_cannot_overwrite_the_header(runtime):
    with pytest.raises(ProtocolError) as info:
        runtime.call("proto_calls", "build_request", "sign_in", KIOSK, 1, RID, 1,
                     {"v": [2, 0], "fw": "f", "board": "b"})
    assert (info.value.code, reason(info.value)) == (
        "invalid", "sign_in.v: is a header field, set by the protocol")


def test_a_reply_echoes_the_requests_kiosk_counter_and_request_id(runtime):
    reply = runtime.call("proto_calls", "build_reply", SETTLE, "settle_reply", 2000,
                         {"txn_id": SETTLE["txn_id"], "settlement": b"\x01"})
    assert (reply["kiosk"], reply["ctr"], reply["rid"], reply["ts"]) == (
        KIOSK, SETTLE["ctr"], RID, 2000)
    assert runtime.call("onestop.protocol.messages", "is_reply_to", reply, SETTLE)
    other = dict(SETTLE, rid=b"\x00" * 8)
    assert not runtime.call("onestop.protocol.messages", "is_reply_to", reply, other)
    assert not runtime.call("onestop.protocol.messages", "is_reply_to",
                            dict(reply, t="cancel_reply"), SETTLE)


def test_an_error_about_an_unauthenticated_frame_trusts_nothing(runtime):
    err = runtime.call("onestop.protocol.messages", "error_reply", None, "bad_signature",
                       "signature does not verify", 3000)
    assert err == {"v": [1, 0], "t": "error", "kiosk": "", "ctr": 0, "rid": bytes(8),
                   "ts": 3000, "code": "bad_signature", "msg": "signature does not verify"}
    assert runtime.call("onestop.protocol.messages", "validate", err) == err


def test_an_error_reply_echoes_the_request_and_can_carry_the_clock(runtime):
    err = runtime.call("onestop.protocol.messages", "error_reply", SETTLE, "stale",
                       "timestamp 600 s off", 3000, 3000)
    assert (err["kiosk"], err["ctr"], err["rid"], err["code"], err["now"]) == (
        KIOSK, SETTLE["ctr"], RID, "stale", 3000)
    assert runtime.call("onestop.protocol.messages", "validate", err) == err


@pytest.mark.parametrize("code, wire", [("cbor_truncated", "malformed"),
                                        ("cose_bad_alg", "malformed"),
                                        ("frame_crc", "malformed"),
                                        ("replay", "replay"),
                                        ("disk_full", "internal")])
def test_error_replies_send_only_codes_frames_cddl_knows(runtime, code, wire):
    err = runtime.call("onestop.protocol.messages", "error_reply", SETTLE, code, "m", 1)
    assert err["code"] == wire


def test_an_error_about_a_malformed_request_sends_zeros_for_its_bad_header_fields(runtime):
    bad = dict(SETTLE, kiosk="no spaces allowed", ctr=-1)
    err = runtime.call("onestop.protocol.messages", "error_reply", bad, "invalid", "kiosk", 1)
    assert (err["kiosk"], err["ctr"], err["rid"]) == ("", 0, RID)
    assert runtime.call("onestop.protocol.messages", "validate", err) == err


# ---------------------------------------------------------------- validate agrees with frames.cddl
FIELD_NAMES = sorted({k for _, m in EXAMPLES for k in m} | set(make_vectors.BREAKDOWN)
                     | set(make_vectors.CARD) | set(make_vectors.BILLS[0]) | {"now", "zzz"})
ODD_VALUES = st.one_of(
    st.integers(-3, 3), st.sampled_from([2**64 - 1, 390, 193750]), st.booleans(), st.none(),
    st.sampled_from(["", "HALL-0101", "K" * 32, "K" * 33, "HALL 0101", "2026-01-01", "2026-1-1",
                     "430121", "T-HALL0101-000041", "settled", "not_found", "dibao", "replay",
                     "43012219560714002X", "K43012256", "sign_in", "error"]),
    st.text(max_size=5), st.binary(min_size=7, max_size=9),
    # fresh containers each time: mutations may later add into them
    st.builds(lambda: [1, 0]), st.builds(lambda: [2, 0]), st.builds(list), st.builds(dict))


def paths(value, prefix=()):
    """Every place in a message a field can be changed or dropped."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, prefix + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += paths(item, prefix + (i,))
    return found


@st.composite
def mutated_messages(draw):
    _, msg = draw(st.sampled_from(EXAMPLES))
    msg = cbor2.loads(cbor2.dumps(msg, canonical=True))  # a deep copy
    for _ in range(draw(st.integers(1, 2))):
        where = draw(st.sampled_from(paths(msg)))
        parent = msg
        for step in where[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "drop", "add"]))
        if action == "drop" and isinstance(parent, dict):
            del parent[where[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(FIELD_NAMES))] = draw(ODD_VALUES)
        else:
            parent[where[-1]] = draw(ODD_VALUES)
    return msg


def cddl_accepts(msg):
    t = msg.get("t")
    rules = leaf_rules(t) if t in messages.REQUESTS + messages.REPLIES else message_map_rules()
    data = cbor2.dumps(msg, canonical=True)
    for rule in rules:
        try:
            check(rule, data)
            return True
        except pycddl.ValidationError:
            pass
    return False


def validate_accepts(msg):
    try:
        messages.validate(msg)
    except ProtocolError as exc:
        assert exc.code in ("invalid", "unsupported_version")
        return False
    return True


def in_pycddl_blind_spot(msg):
    """An array where frames.cddl wants something else: pycddl 0.6 accepts any array for a
    choice of literal values (hosp_lv: [7] passes `1 / 2 / 3`), so it cannot judge these."""
    for path in paths(msg):
        value = msg
        for step in path:
            value = value[step]
        if isinstance(value, list) and path[-1] not in ("v", "bills"):
            return True
    return False


@settings(max_examples=400, deadline=None)
@given(mutated_messages())
def test_validate_accepts_exactly_what_frames_cddl_accepts(msg):
    accepted = validate_accepts(msg)
    if accepted or not in_pycddl_blind_spot(msg):
        assert accepted == cddl_accepts(msg)


# ---------------------------------------------------------------- text patterns
CDDL_TEXT = FRAMES_CDDL.read_text(encoding="utf-8")
# (message, path to a text field, the frames.cddl name whose .regexp governs it)
PATTERN_FIELDS = [
    ("sign_in", ("kiosk",), "kiosk_id_text"), ("settle", ("txn_id",), "txn_id_text"),
    ("reconcile", ("date",), "date_text"), ("pending_bills", ("psn_no",), "psn_no_text"),
    ("person_info_reply", ("insu_admdvs",), "admdvs_code"),
    ("person_info", ("card", "ssn"), "ssn"), ("person_info", ("card", "card_no"), "card_no"),
    ("person_info", ("card", "card_id"), "card_id"),
]


def cddl_regexp(name):
    found = re.search(r"(?:^" + name + r" =|\b" + name + r":) tstr \.regexp \"([^\"]*)\"",
                      CDDL_TEXT, re.M)
    assert found, name
    return found.group(1)


def with_field(t, path, value):
    msg = cbor2.loads(cbor2.dumps(dict(EXAMPLES)[t], canonical=True))
    target = msg
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return msg


def near_misses(pattern):
    """Text that matches `pattern`, changed a little: often no longer matching."""
    def change(text, position, char, action):
        position %= len(text) + 1
        if action == "insert":
            return text[:position] + char + text[position:]
        if action == "replace":
            return text[:position] + char + text[position + 1:]
        return text[:position] + text[position + 1:]

    return st.builds(change, st.from_regex(pattern, fullmatch=True), st.integers(0, 50),
                     st.sampled_from("aZ9X_-: \n中"), st.sampled_from(["insert", "replace",
                                                                      "delete"]))


ANY_TEXT = st.characters(codec="utf-8")
BMP_TEXT = st.characters(codec="utf-8", max_codepoint=0xFFFF)  # what crosses to MicroPython


@st.composite
def patterned_fields(draw, alphabet):
    t, path, rule = draw(st.sampled_from(PATTERN_FIELDS))
    pattern = cddl_regexp(rule)
    value = draw(st.one_of(st.from_regex(pattern, fullmatch=True, alphabet=alphabet),
                           near_misses(pattern), st.text(alphabet, max_size=45)))
    return t, path, pattern, value


@settings(max_examples=500)
@given(patterned_fields(ANY_TEXT))
def test_text_fields_match_exactly_what_their_frames_cddl_regexp_matches(field):
    t, path, pattern, value = field
    expected = re.fullmatch(pattern, value) is not None
    assert validate_accepts(with_field(t, path, value)) == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(patterned_fields(BMP_TEXT))
def test_micropython_matches_text_fields_the_same_way(micropython_worker, field):
    t, path, pattern, value = field
    msg = with_field(t, path, value)
    try:
        micropython_worker.call("onestop.protocol.messages", "validate", msg)
        accepted = True
    except ProtocolError as exc:
        assert exc.code == "invalid"
        accepted = False
    assert accepted == (re.fullmatch(pattern, value) is not None)
