"""errors.py: the list of codes, the fault numbers and their texts, and wire_code."""

import ast
import re
import sys
from pathlib import Path

import onestop.protocol
import pytest
from onestop.protocol import errors, texts
from onestop.protocol.errors import CODES, ProtocolError, code_of, fault, wire_code

PROTOCOL = Path(onestop.protocol.__file__).resolve().parent
CDDL = (PROTOCOL / "spec" / "frames.cddl").read_text(encoding="utf-8")
TEXT_LINES = [line for line in texts.TEXTS.splitlines() if line]
INTERNAL = CODES.split()[:CODES.split().index("malformed")]


def fault_numbers():
    """Every fault number a module defines: (module, name, value, code named in its comment),
    from the lines `_NAME = const(...)  # code` after "# Fault numbers" up to a blank line."""
    found = []
    for path in sorted(PROTOCOL.glob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        if not any(line.startswith("# Fault numbers") for line in lines):
            continue
        module = getattr(__import__("onestop.protocol." + path.stem).protocol, path.stem)
        start = next(i for i, line in enumerate(lines) if line.startswith("# Fault numbers"))
        code = None
        for line in lines[start:]:
            if not line.strip():
                break
            match = re.match(r"(_[A-Z0-9_]+) = const\(", line)
            if match:
                comment = re.search(r"#\s*([a-z_0-9]+)\s*$", line)
                code = comment.group(1) if comment else code
                found.append((path.stem, match.group(1), getattr(module, match.group(1)), code))
    return found


FAULTS = fault_numbers()


def test_every_code_is_listed_once_internal_ones_first():
    words = CODES.split()
    assert len(words) == len(set(words))
    assert all(code.startswith(("cbor_", "cose_", "frame_")) for code in INTERNAL)
    for code in INTERNAL:  # and each is explained in the module's documentation
        assert re.search(r"^\s+" + code + r"\s+\S", errors.__doc__, re.M), code


def test_wire_codes_are_frames_cddl_error_codes_in_order():
    choice = re.search(r"^error_code = (.*?)(?:\n\n|\Z)", CDDL, re.M | re.S).group(1)
    assert errors.WIRE_CODES == tuple(re.findall(r'"([a-z_]+)"', choice))
    assert CODES.split()[len(INTERNAL):] == list(errors.WIRE_CODES)


@pytest.mark.parametrize("code", INTERNAL)
def test_internal_codes_go_on_the_wire_as_malformed(code):
    assert wire_code(code) == "malformed"


def test_wire_codes_pass_through_and_others_are_internal():
    for code in errors.WIRE_CODES:
        assert wire_code(code) == code
    for code in ("disk_full", "", "malformed stale", "stal", "nternal", "internal_x"):
        assert wire_code(code) == "internal"
    assert wire_code("cbor_anything") == wire_code("frame_x") == "malformed"


def test_every_text_is_numbered_with_its_code():
    numbers = []
    for line in TEXT_LINES:
        number, code, text = line.split(" ", 2)
        assert code_of(int(number)) == code, line
        assert text
        numbers.append(int(number))
    assert len(numbers) == len(set(numbers))


def test_every_fault_a_module_raises_has_its_text_and_the_code_its_comment_names():
    assert len(FAULTS) > 60
    numbers = {int(line.split(" ", 1)[0]) for line in TEXT_LINES}
    for module, name, number, code in FAULTS:
        assert number in numbers, (module, name)
        assert code_of(number) == code, (module, name)
    assert numbers == {number for _, _, number, _ in FAULTS}  # no text left unused


def test_a_fault_carries_its_code_text_and_surroundings():
    with pytest.raises(ProtocolError) as info:
        fault(25 * 32 + 2, ("[0-9]{6}",), "settle.psn_no: ", " (more)")
    assert (info.value.code, info.value.msg) == (
        "invalid", "settle.psn_no: must match [0-9]{6} (more)")
    assert info.value.__context__ is None


def test_without_its_texts_a_fault_still_has_its_code(monkeypatch):
    monkeypatch.setitem(sys.modules, "onestop.protocol.texts", None)  # import fails
    monkeypatch.delattr(onestop.protocol, "texts", raising=False)
    with pytest.raises(ProtocolError) as info:
        fault(0 * 32 + 1, (), "", " at byte 3")
    assert (info.value.code, info.value.msg) == ("cbor_truncated", "(fault 1) at byte 3")


def test_faults_raised_from_handlers_carry_no_context():
    from onestop.protocol import cbor, cose

    with pytest.raises(ProtocolError) as info:
        cbor.dumps("\ud800")
    assert info.value.code == "cbor_bad_utf8" and info.value.__context__ is None
    bad_protected = bytes.fromhex("d28444a1013807a04040")  # protected header: -8 not canonical
    with pytest.raises(ProtocolError) as info:
        cose.decode1(bad_protected)
    assert info.value.code == "cose_malformed" and info.value.__context__ is None


def test_codes_are_plain_strings_in_the_modules_not_module_names():
    """No module-level name per code any more: the codes live in CODES and texts.py."""
    tree = ast.parse((PROTOCOL / "errors.py").read_text(encoding="utf-8"))
    names = {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
             if isinstance(t, ast.Name)}
    assert names == {"CODES"}


def test_the_texts_are_dropped_again_on_micropython(runtime):
    loaded = runtime.call("proto_calls", "texts_loaded_after_a_fault")
    assert loaded == (runtime.heapsize is None)  # kept by CPython, dropped by MicroPython
