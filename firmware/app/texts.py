# Every word a resident reads on the screen: Chinese first, English below.
# A body line is 760 px of 24 px type: at most 31 Chinese characters or 63 ASCII ones
# (hardware/display-pages.json); longer text is cut off on the panel.
# Each entry: (title zh, title en, line zh, line en).

WELCOME = ("医保自助结算", "Medical insurance self-service",
           "请插入社保卡", "Please insert your social security card")
# Under the welcome page's words while the roll is near its end: for the hall's staff.
PAPER_LOW = ("打印纸即将用完，请工作人员换纸", "Paper running low - staff: please add a roll")
READING = ("正在读卡", "Reading your card", "请勿拔卡", "Please do not remove your card")
LOOKUP = ("正在查询", "Looking up your bills", "请稍候", "Please wait")
PRICING = ("正在计算", "Working out what insurance pays", "请稍候", "Please wait")
SETTLING = ("正在结算", "Settling", "请勿拔卡，请稍候", "Please wait, do not remove your card")
PRINTING = ("正在打印凭条", "Printing your receipt", "请稍候", "Please wait")
REPRINTING = ("正在打印已保存的凭条", "Printing a saved receipt", "请稍候", "Please wait")
# At power-on with a settlement left open, while the gateway is asked how it ended (half a
# minute when the gateway is away): the screen comes up blank with the power otherwise.
CHECKING = ("正在核实上一笔结算", "Checking the last settlement", "请稍候", "Please wait")
DONE = ("结算完成", "Settlement complete",
        "请取走社保卡和凭条", "Please take your card and your receipt")
# ...when the resident has other bills waiting (they chose one of them): the card goes in again.
DONE_MORE = ("请取走社保卡和凭条，另有%d笔费用请再插卡",
             "Take your card and receipt; %d more to settle: insert it again")
# The kiosk takes no money: what is left is paid where the resident pays the clinic's bills.
PAY_AT = ("请到窗口缴纳个人支付金额", "Please pay this amount at the counter")
NOTHING_TO_PAY = ("您无需再缴费", "You have nothing more to pay")
BILLS = ("请选择要结算的费用", "Choose a bill to settle")
CONFIRM = ("请确认结算", "Please check and confirm")
HELLO = ("%s，您好", "Hello, %s")
# More bills than buttons: the rest are listed when the card goes in again.
MORE_BILLS = ("另有%d笔费用，办完本笔后请重新插卡",
              "%d more: insert your card again after this one")
LEAVE = ("取出社保卡即可退出", "Take out your card to leave")
# The last seconds of the bills and confirm pages, on the strip over the titles (two lines of
# the 40 px font: at most 19 Chinese characters, 38 ASCII ones).
MORE_TIME = ("还剩%d秒，点这里继续", "%d s left: touch here for more time")
TAKE_CARD = ("请取走社保卡", "Please take your card")
# ...under it, for a card found in the slot as the kiosk starts (a power cut mid-visit): with no
# transaction left open, every settlement made has its receipt printed, so the resident can
# tell from the receipt in hand whether the bill was settled.
RESTARTED = ("终端刚重新启动：已出凭条的费用已结算",
             "The kiosk restarted: a bill with a receipt is settled",
             "未出凭条的未结算，请重新插卡办理",
             "No receipt: not settled, insert your card again")
# ...when the card in the slot is not a social-security card (a bank card put in by mistake).
TAKE_THIS_CARD = ("请取出此卡", "Please take this card out")
# While the kiosk waits on the gateway (a settlement in doubt) for a resident still there;
# one who leaves learns at the counter how it ended (and gets the receipt, if it settled).
WAIT_OR_LEAVE = ("请稍候，或取卡离开后到窗口查询",
                 "Please wait, or take your card and ask at the counter")
# ...for a saved receipt: one who leaves gets it from staff (printed later, for the clerk).
WAIT_OR_LEAVE_RECEIPT = ("请稍候，或离开后向工作人员领取凭条",
                         "Please wait, or leave: staff will give you the receipt")
CONFIRM_BUTTON = "确认 Confirm"
CANCEL_BUTTON = "取消 Cancel"

# The confirm page and the receipt name each fund's share the same way.
BASIC = ("医保统筹", "Basic insurance")
SERIOUS = ("大病保险", "Serious illness insurance")
ASSISTANCE = ("医疗救助", "Medical assistance")
TOTAL = ("费用总额", "Total bill")
YOU_PAY = ("个人支付(元)", "You pay (yuan)")
YUAN = "元"
BILL_TOTAL = "总额"  # before a bill's amount on its button: the total, not what is paid

# Error and notice pages, by the reason a session ended.
ERRORS = {
    "card_unreadable": ("无法读取社保卡", "The card could not be read",
                        "请取出后重新插入，仍不行请到窗口办理",
                        "Take it out and insert it again, or ask at the counter"),
    "card_removed": ("社保卡已取出", "Card taken out",
                     "已取消，未结算，可重新插卡办理",
                     "Cancelled, nothing was settled: insert your card to start again"),
    "wrong_card": ("这不是社保卡", "This is not a social security card",
                   "请插入社会保障卡", "Please insert your social security card"),
    "card_expired": ("社保卡已过有效期", "This card has expired",
                     "请到窗口办理", "Please ask at the counter"),
    "unknown_person": ("未查到参保信息", "No insurance record for this card",
                       "请到窗口办理", "Please ask at the counter"),
    "no_bills": ("没有待结算的费用", "No bills waiting",
                 "您目前没有需要结算的费用，如有疑问请到窗口",
                 "Nothing to settle now; with any question, ask at the counter"),
    "bill_settled": ("该费用已结算", "This bill is already settled",
                     "无需再次结算", "There is nothing more to do for it"),
    "amount_changed": ("金额已变化", "The amount has changed",
                       "未结算，请重新插卡查看", "Nothing was settled: insert your card again"),
    "gateway_unreachable": ("网络连接中断", "Cannot reach the insurance service",
                            "未结算，请稍后再试或到窗口办理",
                            "Nothing was settled: try again later, or ask at the counter"),
    "gateway_untrusted": ("无法核验保险服务", "The insurance service could not be verified",
                          "未结算，请联系工作人员", "Nothing was settled, please ask staff"),
    "service_refused": ("暂时无法办理", "Service unavailable",
                        "请稍后再试或到窗口办理", "Please try later, or ask at the counter"),
    "timeout": ("操作超时", "Timed out", "已取消，未结算，可重新插卡办理",
                "Cancelled, nothing was settled: insert your card to start again"),
    "cancelled": ("已取消", "Cancelled", "未结算", "Nothing was settled"),
    # The kiosk tells no one in the hall about its printer: the resident is asked to.
    "paper_out": ("打印机缺纸", "The printer is out of paper",
                  "结算已保存，请找工作人员装纸后打印凭条",
                  "Your settlement is saved; ask staff to load paper to print it"),
    "printer_fault": ("打印机故障", "The printer has a problem",
                      "结算已保存，请找工作人员修好后打印凭条",
                      "Your settlement is saved; ask staff to fix the printer"),
    "in_doubt": ("结算结果待确认", "Settlement not yet confirmed",
                 "系统将自动核实，绝不重复结算",
                 "It will be checked automatically and never settled twice"),
    "not_settled": ("未能结算", "Not settled",
                    "未结算，请稍后再试或到窗口办理",
                    "Nothing was settled: try again later, or ask at the counter"),
    "settlement_invalid": ("结算凭证无法核验", "The settlement could not be verified",
                           "请联系工作人员", "Please ask a member of staff"),
}

# Why the kiosk does not take cards, shown instead of the welcome page.
OUT_OF_SERVICE = ("暂停服务", "Out of service")
OUT_OF_SERVICE_REASONS = {
    "paper_out": ("打印机缺纸，请联系工作人员", "The printer is out of paper, please ask staff"),
    "printer_fault": ("打印机故障，请联系工作人员", "The printer has a problem, please ask staff"),
    "in_doubt": ("正在核实上一笔结算，请稍候或到窗口办理",
                 "Checking the last settlement: wait, or ask at the counter"),
    "settlement_invalid": ("结算凭证无法核验，请联系工作人员",
                           "A settlement could not be verified, please ask staff"),
    "reader_fault": ("读卡器故障，请联系工作人员",
                     "The card reader has a problem, please ask staff"),
    "fault": ("设备需要维护，请联系工作人员", "This kiosk needs service, please ask staff"),
    "flash_full": ("存储空间已满，请联系工作人员", "The kiosk's storage is full, please ask staff"),
}
# ...under the printer's reason while a settled receipt waits for it (recovery: the power was
# cut before it printed): whoever settled learns the money part is done, not only "out of paper".
RECEIPT_WAITS = {
    "paper_out": ("上一笔结算已保存，工作人员装纸后打印凭条",
                  "Last settlement saved; receipt prints once staff load paper"),
    "printer_fault": ("上一笔结算已保存，打印机修好后打印凭条",
                      "Last settlement saved; receipt prints once the printer is fixed"),
}

# The receipt.
RECEIPT_TITLE = ("医疗保障结算凭条", "Settlement receipt")  # fits 32 columns
RECEIPT_AGAIN = ("补打凭条 同一笔结算", "Reprint - settled once only")
# Printed by recovery with nobody at the kiosk for it (the resident left before the power came
# back, or before paper was loaded): it lands in the tray for whoever comes next.
RECEIPT_UNCLAIMED = ("非本人凭条请交大厅工作人员", "Not yours? Hand it to the clerk")
RECEIPT_FIELDS = {
    "name": "姓名 Name",
    "ssn": "证件号 ID",
    "clinic": "医疗机构 Clinic",
    "date": "就诊日期 Date",
    "setl_time": "结算时间 Time",  # + "YYYY-MM-DD HH:MM" fits one 32-column row
    "setl_id": "结算号 Settlement no.",
    "kiosk": "终端 Kiosk",
    "txn_id": "交易号 Kiosk transaction",
}
RECEIPT_PAY_AT = "请到窗口缴费 Pay at the counter"  # fits 32 columns
RECEIPT_FOOT = ("扫码核验结算凭证", "Scan to verify this settlement")
# What to do if something on it looks wrong: the receipt goes home, the kiosk's screen does not.
RECEIPT_HELP = ("如有疑问请持本凭条到窗口咨询", "Any problem? Ask at the counter")  # 32 columns
