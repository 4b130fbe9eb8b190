# The kiosk's link to the gateway: signed requests out, verified replies in, over TCP or a serial
# line, with the same framing either way (onestop.protocol).
#
# - Each attempt is a new request: the next counter value and a fresh random rid. Only a reply
#   that echoes both (and our kiosk id) answers it; anything else is counted and ignored (a late
#   answer to an attempt that timed out, line noise, a frame signed by another key).
# - No answer in time, or the connection broke: the request is sent again after a pause that
#   doubles each time (with jitter), up to `gateway_attempts` tries. Every request the kiosk
#   makes is safe to repeat: the read-only ones trivially, `settle` because it carries the same
#   txn_id, which the gateway makes exactly-once, and `receipt_printed` by txn_id too.
# - A `stale` error carries the gateway's `now`: the clock is set from it and the request is sent
#   again at once (once per call). sign_in's reply sets the clock too.
# - Replies that came but did not verify against the pinned gateway key, and no reply that did:
#   GatewayUntrusted, not GatewayUnreachable. The gateway answers, but this kiosk was given the
#   wrong gateway key (or something else answers in its place): a technician's fault to fix,
#   not a network one to wait out.
# - On a serial line each request is written after a 0x00 of its own: noise on the idle line
#   (a cable brushed) then ends as a run the gateway discards, instead of heading the request,
#   which would fail its CRC and cost a whole reply timeout. Runs that came in and were no
#   frame are logged once per exchange (line noise, or the two ends at different baud rates).
# - A serial line that fails (OSError: EIO once a USB adapter is unplugged) is opened again at
#   the next attempt, as TCP connects again; the board closes the old one then.
# - A TCP connection left quiet for `gateway_idle` ms or more may have been closed by the
#   gateway meanwhile (its idle timeout, 2 minutes): found closed at the next request, it is
#   connected again and the request sent again at once, unlogged and not counted as an
#   attempt. In a hall most visits are minutes apart: each began with a retry line in the log
#   and a pause the resident waited through.
# - Key rotation (a kiosk given the operator's authority key): a sign_in_reply may carry the
#   gateway key's cert (frames.cddl gateway_cert). One of a higher serial than the kiosk's,
#   signed by the authority, moves the kiosk to the cert's key: replies signed by the old key
#   are refused from then on, and `on_key` keeps the new one on the flash. After a rotation the
#   sign_in_reply itself is signed by the key the kiosk does not know yet: its cert is checked
#   first, then the frame with the cert's key. A reply to any other request signed by a key
#   the kiosk does not know makes it sign in (to learn the cert) and send the request again,
#   once per call. A cert that changes nothing costs no signature check; only a key change
#   costs one (two, with the frame's).
import asyncio
import gc
import os
import time

from app.heap import Collecting
from onestop.protocol import cbor, cose, ed25519, framing, messages
from onestop.protocol.errors import ProtocolError

READ_SIZE = 256
RID_SIZE = 8
_LEAD = b"\x00"  # written before each frame on a serial line
_NOISE_HINT = "line noise or a wrong baud rate"


class GatewayError(Exception):
    """The gateway answered with an `error` frame: it refused the request. `bound` False: the
    error echoes no request (the gateway could not authenticate a frame, frames.cddl), so it is
    not known to be about this one: anyone on the link can replay such an error, signed as it
    is, in place of any answer. Shown, never taken as the outcome of a settle (txn.py)."""

    def __init__(self, code, msg="", now=None, bound=True):
        super().__init__(code, msg)
        self.code = code
        self.msg = msg
        self.now = now
        self.bound = bound


class GatewayUnreachable(Exception):
    """No answer after every attempt: the request may or may not have reached the gateway."""


class GatewayUntrusted(GatewayUnreachable):
    """Every answer failed the gateway key check: as unreachable for the request's outcome
    (nothing verified came back), but a fault of the kiosk's configuration."""


# Why a reply failed that says "not signed by the gateway we pinned", not "damaged on the way".
_UNTRUSTED_CODES = ("bad_signature", "unknown_kiosk")


class _Closed(Exception):
    pass


class _Relearn(Exception):
    """A reply signed by a gateway key this kiosk does not know: sign in to learn its cert."""


def _why(error):
    """A dropped exchange, as a technician reads it in the log (not a class name)."""
    if isinstance(error, _Closed):
        return "connection closed by the gateway"
    if isinstance(error, asyncio.TimeoutError):
        return "no answer in time"
    return str(error) or type(error).__name__  # OSError: "[Errno 111] ECONNREFUSED"


def connector(board, gateway):
    """(connect coroutine function, over_tcp) for the gateway address in config.json."""
    if gateway["kind"] == "tcp":
        async def connect():
            await board.start_network()
            return await asyncio.open_connection(gateway["host"], gateway["port"])
        return connect, True

    async def connect_serial():
        return await board.open_uart("gateway")
    return connect_serial, False


class GatewayLink:
    def __init__(self, kiosk_id, signer, counter, clock, gateway_kid, gateway_key, connect,
                 over_tcp, timeouts, log=None, authority=None, serial=0, on_key=None,
                 previous=None):
        self.kiosk_id = kiosk_id
        self.signer = signer
        self.counter = counter
        self.clock = clock
        self.gateway_kid = gateway_kid
        self.gateway_key = gateway_key
        self._connect = connect
        self.over_tcp = over_tcp  # TCP: EOF means closed, reconnect; a serial line stays open
        self.timeouts = timeouts
        self._log = log
        self._streams = None
        self._reopen = False  # the serial line failed: say so when it opens again
        self._quiet_since = None  # ticks_ms of the last answer on the open TCP connection
        self._deframer = framing.Deframer()
        self._buf = bytearray(READ_SIZE)
        self.signed_in = False
        self.sign_no = None
        self._untrusted = 0  # this call's replies that failed the gateway key check
        # Key rotation: (authority kid, its verifier) or None; the trusted key's cert serial;
        # on_key(kid, public key, serial, previous) keeps a new key (previous: the
        # (kid, public key) trusted before it, or None); the last cert refused (its
        # signature: logged once); hello: (fw, board) to sign in with again (set by sign_in,
        # or by the kiosk beforehand).
        self._authority = authority
        self.serial = serial
        self._on_key = on_key
        self._refused = None
        # (kid, public key) of the key trusted before the last change: a settlement it signed
        # before the rotation (a txn in doubt across it) still opens, inside a reply verified
        # with the trusted key
        self._previous = previous
        self.hello = None
        self._stranger = None  # the unknown kid of the frame being opened
        self._may_relearn = False
        self.stats = {"requests": 0, "retries": 0, "unmatched": 0, "rejected": 0,
                      "reconnects": 0}

    # ------------------------------------------------------------ public
    async def call(self, t, attempts=0, **body):
        """The verified reply to request `t`. Raises GatewayError if the gateway refused it,
        GatewayUnreachable if no attempt got an answer (of `attempts`; default: the
        configured gateway_attempts)."""
        attempts = attempts or self.timeouts["gateway_attempts"]
        pause = self.timeouts["backoff_first"]
        clock_fixed = False
        reopened = False
        relearned = False
        tries = 0
        self._untrusted = 0
        while True:
            tries += 1
            quiet = self._quiet()
            self._may_relearn = not relearned and self._authority is not None \
                and t != "sign_in" and self.hello is not None
            try:
                return await self._exchange(t, body)
            except _Relearn:
                relearned = True  # once per call
                tries -= 1
                await self.sign_in(self.hello[0], self.hello[1], attempts)
                self._untrusted = 0
                continue
            except GatewayError as e:
                if e.code == "stale" and e.now is not None and not clock_fixed:
                    self.clock.set(e.now)
                    clock_fixed = True
                    continue
                raise
            except (OSError, asyncio.TimeoutError, _Closed) as e:
                if isinstance(e, _Closed) and quiet and not reopened:
                    reopened = True  # closed while quiet: not a failed attempt
                    tries -= 1
                    self.stats["reconnects"] += 1
                    await self.close()
                    continue
                await self._drop(t, e)
                if tries >= attempts:
                    self.signed_in = False  # sign in again once the gateway is back
                    if self._untrusted:
                        self._note("gateway_untrusted", t=t, rejected=self._untrusted,
                                   kid=self.gateway_kid)
                        raise GatewayUntrusted(
                            "%s: %d replies not signed by the pinned gateway key %s"
                            % (t, self._untrusted, self.gateway_kid)) from None
                    raise GatewayUnreachable(
                        "%s: no answer after %d attempts" % (t, tries)) from None
                self.stats["retries"] += 1
                await asyncio.sleep_ms(pause + pause * os.urandom(1)[0] // 512)
                pause = min(pause * 2, self.timeouts["backoff_max"])

    async def sign_in(self, fw, board, attempts=0):
        self.hello = (fw, board)
        reply = await self.call("sign_in", attempts, fw=fw, board=board)
        self.clock.set(reply["now"])
        self.sign_no = reply["sign_no"]
        self.signed_in = True
        return reply

    async def close(self):
        streams = self._streams
        self._streams = None
        self._quiet_since = None
        self._deframer.reset()
        if streams is not None and self.over_tcp:
            try:
                streams[1].close()
                await streams[1].wait_closed()
            except OSError:
                pass

    def _quiet(self):
        """The open TCP connection has been quiet `gateway_idle` ms or more."""
        since = self._quiet_since
        return since is not None and \
            time.ticks_diff(time.ticks_ms(), since) >= self.timeouts["gateway_idle"]

    # ------------------------------------------------------------ one attempt
    async def _exchange(self, t, body):
        if self._streams is None:
            self._streams = await asyncio.wait_for_ms(self._connect(),
                                                      self.timeouts["gateway_connect"])
            if self._reopen:
                self._reopen = False
                self._note("gateway_line_reopened")
        reader, writer = self._streams
        request = messages.request(t, self.kiosk_id, self.counter.next(), os.urandom(RID_SIZE),
                                   self.clock.now(), **body)
        frame = framing.encode(messages.seal(request, self.kiosk_id, self.signer))
        self.stats["requests"] += 1
        if not self.over_tcp:
            writer.write(_LEAD)
        writer.write(frame)
        await writer.drain()
        del frame
        deadline = time.ticks_add(time.ticks_ms(), self.timeouts["gateway_reply"])
        bad = self._discarded()
        try:
            while True:
                payload = self._deframer.next_frame()
                if payload is None:
                    await self._receive(reader, deadline)
                    continue
                reply = self._open(payload, t)
                if reply is None:
                    continue
                bound = messages.is_reply_to(reply, request)
                if not bound and not _unauthenticated_error(reply):
                    self.stats["unmatched"] += 1
                    continue
                if self.over_tcp:
                    self._quiet_since = time.ticks_ms()
                if reply["t"] == "error":
                    # The clock is set only from an error that answers this request.
                    raise GatewayError(reply["code"], reply["msg"],
                                       reply.get("now") if bound else None, bound)
                return reply
        finally:
            bad = self._discarded() - bad
            if bad:  # once per exchange, however many
                if self.over_tcp:
                    self._note("gateway_frames_discarded", t=t, frames=bad)
                else:
                    self._note("gateway_frames_discarded", t=t, frames=bad, hint=_NOISE_HINT)

    def _discarded(self):
        """Runs received that were no frame (bad COBS or CRC, over-long), so far."""
        stats = self._deframer.stats
        return stats["cobs"] + stats["crc"] + stats["too_large"]

    async def _receive(self, reader, deadline):
        left = time.ticks_diff(deadline, time.ticks_ms())
        if left <= 0:
            raise asyncio.TimeoutError
        n = await asyncio.wait_for_ms(reader.readinto(self._buf), left)
        if n:
            self._deframer.receive_data(memoryview(self._buf)[:n])
        elif self.over_tcp:
            raise _Closed()
        else:
            await asyncio.sleep_ms(20)  # a UART with nothing to give: don't spin

    def _open(self, payload, t):
        self._stranger = None
        try:
            try:
                reply = messages.open(payload, self._key_for)[1]
            except ProtocolError:
                if self._stranger is None or self._authority is None:
                    raise
                if t == "sign_in":
                    return self._rotated(payload)
                if self._may_relearn:
                    self.stats["rejected"] += 1
                    self._note("gateway_reply_rejected", code="unknown_kiosk", kid=self._stranger)
                    raise _Relearn() from None
                raise
            if t == "sign_in" and "cert" in reply and self._authority is not None:
                record = self._certified(reply["cert"], self.gateway_kid)
                if record is not None and record["key"] == _public(self.gateway_key):
                    self._switch(record, self.gateway_key)  # the same key, certified anew
            return reply
        except ProtocolError as e:
            self.stats["rejected"] += 1
            if e.code in _UNTRUSTED_CODES:
                self._untrusted += 1
            self._note("gateway_reply_rejected", code=e.code)
            return None
        except MemoryError:
            # A frame of thousands of tiny CBOR items decodes to ~70 times its size before the
            # signature is checked, and anyone on the link can send one: refused like garbage.
            gc.collect()
            self.stats["rejected"] += 1
            self._note("gateway_reply_rejected", code="too_costly")
            return None

    def _key_for(self, kid):
        if kid != self.gateway_kid:
            self._stranger = kid
            raise ProtocolError("unknown_kiosk", "reply signed by %s, not the pinned gateway" % kid)
        return self.gateway_key

    def open_settlement(self, data):
        """The settlement_record of a settlement in a reply this link verified: checked with
        the trusted gateway key, or with the one before it if that signed it."""
        key = self.gateway_key
        old = self._previous
        if old is not None and cose.decode1(data).kid == old[0]:
            key = Collecting(ed25519.VerifyingKey(old[1]))
        return messages.open_settlement(data, key)

    # ------------------------------------------------------------ key rotation
    def _rotated(self, payload):
        """A sign_in_reply signed by a key we do not know: its cert first (the authority's
        signature, a higher serial, naming the frame's signer), then the frame, with the
        cert's key. The reply, once both verify; ProtocolError otherwise."""
        sign1 = cose.decode1(payload)
        msg = cbor.loads(sign1.payload)  # not trusted yet: only its cert is read
        cert = msg.get("cert") if isinstance(msg, dict) else None
        del msg
        record = None
        if isinstance(cert, bytes):
            record = self._certified(cert, sign1.kid)
        if record is None:
            raise ProtocolError("unknown_kiosk", "reply signed by %s, not the pinned gateway "
                                "and with no cert of the authority for it" % sign1.kid)
        key = Collecting(ed25519.VerifyingKey(record["key"]))
        reply = messages.open(payload, lambda kid: key)[1]
        self._switch(record, key)
        return reply

    def _certified(self, cert, kid):
        """The cert's record if the authority signed it for `kid` with a serial above ours;
        else None (logged once per cert when it is not the one we trust already)."""
        try:
            sign1, record = messages.read_cert(cert)
        except ProtocolError as e:
            return self._refuse(None, e.code)
        serial = record["serial"]
        if serial == self.serial and record["kid"] == self.gateway_kid:
            return None  # the cert of the key we trust: nothing to check
        if sign1.signature == self._refused:
            return None
        if serial <= self.serial:
            return self._refuse(sign1, "old_serial", record)
        if record["kid"] != kid:
            return self._refuse(sign1, "other_key", record)
        try:
            if sign1.kid != self._authority[0]:
                raise ProtocolError("bad_signature", sign1.kid)
            cose.verify1(sign1, self._authority[1])
        except ProtocolError as e:
            return self._refuse(sign1, e.code, record)
        return record

    def _refuse(self, sign1, why, record=None):
        if sign1 is not None:
            self._refused = sign1.signature
        if record is None:
            self._note("gateway_cert_refused", reason=why)
        else:
            self._note("gateway_cert_refused", reason=why, kid=record["kid"],
                       serial=record["serial"], trusted_serial=self.serial)
        return None

    def _switch(self, record, key):
        """Trust the certified key from now on: kept on the flash first, then used."""
        old = self._previous
        if record["kid"] != self.gateway_kid:
            old = (self.gateway_kid, _public(self.gateway_key))
        if self._on_key is not None:
            self._on_key(record["kid"], record["key"], record["serial"], old)
        self._previous = old
        self._note("gateway_key_changed", old_kid=self.gateway_kid, old_serial=self.serial,
                   kid=record["kid"], serial=record["serial"])
        self.gateway_kid = record["kid"]
        self.gateway_key = key
        self.serial = record["serial"]

    async def _drop(self, t, error):
        self._note("gateway_retry", t=t, error=_why(error))
        if self.over_tcp:
            self.stats["reconnects"] += 1
            await self.close()
            return
        self._deframer.reset()  # a half-read frame
        if isinstance(error, OSError) and self._streams is not None:
            # The line itself failed (EIO: its adapter unplugged, its pty gone): the next
            # attempt, after the usual pause, opens it again (the board closes this one then).
            self._streams = None
            self._reopen = True
            self.stats["reconnects"] += 1

    def _note(self, event, **fields):
        if self._log is not None:
            self._log(event, **fields)


def _public(key):
    return getattr(key, "verifier", key).public_key


def _unauthenticated_error(reply):
    """The gateway could not authenticate our frame, so its error echoes nothing (frames.cddl)."""
    return reply["t"] == "error" and reply["ctr"] == 0 and reply["kiosk"] == ""
