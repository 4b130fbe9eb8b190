"""The texts of the protocol's faults, one a line: "<fault number> <code> <text>".

errors.fault imports this module only while it raises a fault (and drops it again on
MicroPython), so the texts take no heap on the board the rest of the time. A fault number is the
index of the code in errors.CODES * 32 + the text's own number; the code written here is for the
reader (tests/protocol/test_errors.py checks that it agrees with the number). A text may hold
%-format fields for the raiser's arguments.
"""

TEXTS = """
0 cbor_truncated offset outside the input
1 cbor_truncated input ends where an item was expected
2 cbor_truncated argument runs past the end
3 cbor_truncated byte string longer than the remaining input
4 cbor_truncated text string longer than the remaining input
5 cbor_truncated array longer than the remaining input
6 cbor_truncated map longer than the remaining input
7 cbor_truncated input ends where a map key was expected
32 cbor_non_canonical argument not in shortest form
64 cbor_indefinite indefinite length
96 cbor_float floats are not allowed (money is integer fen)
97 cbor_float floating-point value
128 cbor_duplicate_key duplicate map key %r
160 cbor_unsorted_map map key %r out of order
192 cbor_too_deep nesting deeper than 16
224 cbor_trailing %d bytes after the item
256 cbor_bad_utf8 text is not encodable as UTF-8
257 cbor_bad_utf8 text string at byte %d is not UTF-8
288 cbor_unsupported integer above 2**64-1
289 cbor_unsupported integer below -2**64
290 cbor_unsupported tag number must be 0..2**64-1
291 cbor_unsupported map key %r: must be an int -24..23 or text under 24 bytes
292 cbor_unsupported cannot encode %s
293 cbor_unsupported simple value other than true/false/null
294 cbor_unsupported text map key of 24 bytes or more
295 cbor_unsupported map key must be an int -24..23 or short text
320 cbor_malformed break outside an indefinite-length item
321 cbor_malformed reserved additional info %d
322 cbor_malformed additional info 31 on major type %d
352 cose_malformed signer returned %d bytes
353 cose_malformed not a COSE_Sign1 (tag 18)
354 cose_malformed COSE_Sign1 must be an array of 4
355 cose_malformed protected header must be a byte string
356 cose_malformed protected header: %s
357 cose_malformed protected header must encode a map
358 cose_malformed unexpected protected header parameters
359 cose_malformed unprotected header must be a map
360 cose_malformed unexpected unprotected header parameters
361 cose_malformed payload must be a byte string (not detached)
362 cose_malformed signature must be 64 bytes
384 cose_bad_alg alg must be EdDSA (-8), protected header is empty
385 cose_bad_alg alg must be EdDSA (-8), got %r
416 cose_bad_kid kid must be text
417 cose_bad_kid kid must be 1..64 bytes
418 cose_bad_kid kid missing
419 cose_bad_kid kid is not UTF-8
448 frame_cobs zero byte inside a frame
449 frame_cobs block at %d runs past the end
450 frame_cobs frame ends with a full block
480 frame_crc frame too short to carry a CRC
481 frame_crc CRC mismatch
512 frame_empty empty frame
576 too_large payload of %d bytes, maximum %d
577 too_large frame of %d encoded bytes
608 bad_signature signature does not verify for kid %s
609 bad_signature cert signed by %s, not the authority
640 unknown_kiosk no key for kid %s
768 unsupported_version version %d.%d not supported; this side speaks 1.x
800 invalid missing
801 invalid expected text
802 invalid must match %s
803 invalid must be one of %s
804 invalid expected an array
805 invalid negative fen
806 invalid expected an unsigned integer
807 invalid expected bytes
808 invalid expected 8 bytes
809 invalid expected true or false
810 invalid expected [major, minor]
811 invalid unexpected field
812 invalid expected a map
813 invalid unknown message type '%s'
814 invalid is a header field, set by the protocol
815 invalid not allowed when status is not_found
816 invalid missing (required unless status is not_found)
817 invalid differs from the signer's kid
818 invalid expected 32 bytes
"""
