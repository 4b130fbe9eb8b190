"""The dual-runtime harness itself: values and errors cross the MicroPython boundary intact."""

import pytest
from onestop.protocol.errors import ProtocolError


def test_values_round_trip_through_both_runtimes(runtime):
    value = {1: b"\x00\xff", "a": [1, -2**63, ("t", None, True)], -3: {}}
    assert runtime.call("mp_echo", "echo", value) == value


def test_protocol_errors_keep_their_code(runtime):
    with pytest.raises(ProtocolError) as info:
        runtime.call("mp_echo", "fail", "cbor_truncated")
    assert info.value.code == "cbor_truncated"


def test_text_beyond_the_basic_plane_crosses_intact(runtime):
    assert runtime.call("mp_echo", "echo", "社保 😀 𠀋") == "社保 😀 𠀋"


def test_protocol_error_message_is_the_message_alone(runtime):
    with pytest.raises(ProtocolError) as info:
        runtime.call("mp_echo", "fail", "invalid")
    assert info.value.msg == "raised on purpose"
