# The paper receipt a resident takes home: who, where, when, what each fund paid, what they pay,
# and a QR code of the gateway-signed settlement (base64url) so anyone can check it is genuine.
# 58 mm paper: 32 columns at size 1, a Chinese character takes two.
import binascii

from app import texts
from app.clock import show as show_time
from app.money import yuan
from drivers.escpos import CENTER, LEFT, Receipt

PAPER_DOTS = 384
RULE = "-" * 32
# Receipt labels are short so that a label and an amount share one 32-column line.
SHARES = (
    ("费用总额 Total", "medfee_sumamt"),
    # how the funds' shares were worked out, as a settlement slip (结算单) states it: what no
    # fund covers, the class-B share paid first, what is in scope, the deductible
    ("全自费 Not covered", "fulamt_ownpay_amt"),
    ("先行自付 B share", "preselfpay_amt"),
    ("范围内 In scope", "inscp_scp_amt"),
    ("起付线 Deductible", "act_pay_dedc"),
    ("医保统筹 Basic", "hifp_pay"),
    ("大病保险 Serious", "hifmi_pay"),
    ("医疗救助 Assistance", "maf_pay"),
    ("基金支付 Funds", "fund_pay_sumamt"),
)
# QR version 1..20 byte-mode capacity at error correction L: picks the version, hence the size.
_QR_CAPACITY_L = (17, 32, 53, 78, 106, 134, 154, 192, 230, 271, 321, 367, 425, 458, 520, 586,
                  644, 718, 792, 858)
_QR_MODULE_MAX = 6


class Base64url:
    """The base64url text (unpadded) of `data` for Receipt.qr: its length, and its bytes made 64
    at a time (from 48 of `data`) as the printer takes them. The whole text of a settlement is
    ~800 bytes, and making it took five blocks that size (text, two replaces, the strip, the
    encoding) while the receipt was built."""

    def __init__(self, data):
        self.data = data

    def __len__(self):
        return (len(self.data) * 4 + 2) // 3

    def __iter__(self):
        data = memoryview(self.data)
        for start in range(0, len(data), 48):
            piece = binascii.b2a_base64(data[start:start + 48], newline=False)
            yield piece.replace(b"+", b"-").replace(b"/", b"_").rstrip(b"=")


def mask_name(name):
    """The name with all but its first and last characters starred (one of two: the first
    kept), as the ID number is masked: the receipt is left in trays and handed on."""
    if len(name) < 2:
        return name
    if len(name) == 2:
        return name[0] + "*"
    return name[0] + "*" * (len(name) - 2) + name[-1]


def qr_module(length):
    """The largest module (dots) at which a QR code holding `length` bytes fits the paper."""
    for version in range(len(_QR_CAPACITY_L)):
        if length <= _QR_CAPACITY_L[version]:
            modules = 17 + 4 * (version + 1) + 8  # + the quiet zone, 4 each side
            return max(1, min(_QR_MODULE_MAX, PAPER_DOTS // modules))
    return 1


def build(entry, record, kiosk_id, again=False, unclaimed=False, hall=""):
    """The receipt for a settled txn, as the chunks to send: `entry` from the journal (who,
    which bill), `record` the verified settlement_record (what was paid); `again`: marked as a
    reprint, so two receipts of one settlement never read as two payments; `unclaimed`: its
    resident is not at the kiosk, so whoever finds it is asked to hand it to the clerk. Made a
    few lines at a time as the printer takes them (Receipt.take), never whole. `hall`: where
    the kiosk stands, under the title (the counter a resident brings it to learns the place)."""
    result = record["result"]
    fields = texts.RECEIPT_FIELDS
    r = Receipt()
    r.init()
    r.align(CENTER)
    r.bold(True)
    r.size(1, 2)
    r.line(texts.RECEIPT_TITLE[0])
    r.size(1, 1)
    r.bold(False)
    r.line(texts.RECEIPT_TITLE[1])
    if again:
        r.line(texts.RECEIPT_AGAIN[0])
        r.line(texts.RECEIPT_AGAIN[1])
    if unclaimed:
        r.bold(True)
        r.line(texts.RECEIPT_UNCLAIMED[0])
        r.line(texts.RECEIPT_UNCLAIMED[1])
        r.bold(False)
    if hall:  # after the notices, which belong right under the title
        r.line(hall)
    r.align(LEFT)
    r.line(RULE)
    yield from r.take()
    r.row(fields["name"], mask_name(entry["name"] or ""))
    r.row(fields["ssn"], entry["ssn_masked"] or "")
    r.line(fields["clinic"])
    r.line(entry["clinic"] or "")
    r.row(fields["date"], entry["date"] or "")
    r.row(fields["setl_time"], show_time(record["setl_time"]))
    r.line(RULE)
    yield from r.take()
    for label, key in SHARES:
        r.row(label, yuan(result[key]))
        yield from r.take()
    r.line(RULE)
    r.align(CENTER)
    r.line("%s %s" % texts.YOU_PAY)
    r.bold(True)
    r.size(2, 2)
    r.line(yuan(result["psn_cash_pay"]))
    r.size(1, 1)
    r.bold(False)
    if result["psn_cash_pay"] > 0:
        r.line(texts.RECEIPT_PAY_AT)
    else:  # as the done page says it: 0.00 alone may still be queued with
        r.line(texts.NOTHING_TO_PAY[0])
        r.line(texts.NOTHING_TO_PAY[1])
    r.align(LEFT)
    r.line(RULE)
    yield from r.take()
    r.line(fields["setl_id"])
    r.line(record["setl_id"])
    r.row(fields["kiosk"], kiosk_id)
    r.line(fields["txn_id"])
    r.line(record["txn_id"])
    r.align(CENTER)
    yield from r.take()
    data = Base64url(entry["settlement"])
    r.qr(data, module=qr_module(len(data)), ecc="L")
    yield from r.take()
    r.line(texts.RECEIPT_FOOT[0])
    r.line(texts.RECEIPT_FOOT[1])
    r.line(texts.RECEIPT_HELP[0])
    r.line(texts.RECEIPT_HELP[1])
    r.feed(1)
    r.cut()
    yield from r.chunks()
