# Money is integer fen everywhere; shown as yuan with integer math: 123456 -> "1,234.56".


def yuan(fen):
    sign = ""
    if fen < 0:
        sign = "-"
        fen = -fen
    whole = str(fen // 100)
    groups = []
    while len(whole) > 3:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    groups.insert(0, whole)
    return "%s%s.%02d" % (sign, ",".join(groups), fen % 100)
