# Runs under MicroPython (onestop.host.mpy.Worker): the GBK codec as the board runs it.
import gc

from drivers import gbk


def encode(table_dir, text):
    gbk.set_table_dir(table_dir)
    return gbk.encode(text)


def decode(table_dir, data):
    gbk.set_table_dir(table_dir)
    return gbk.decode(data)


def code_of(table_dir, char):
    gbk.set_table_dir(table_dir)
    return gbk.code_of(char)


def round_trip_measured(table_dir, text):
    """Encode then decode `text`; heap bytes allocated meanwhile (GC off) and kept after."""
    gbk.set_table_dir(table_dir)
    gc.collect()
    baseline = gc.mem_alloc()
    gc.disable()
    encoded = gbk.encode(text)
    decoded = gbk.decode(encoded)
    allocated = gc.mem_alloc() - baseline
    gc.enable()
    same = decoded == text
    del encoded, decoded
    gc.collect()
    return {"same": same, "heap_allocated": allocated, "heap_retained": gc.mem_alloc() - baseline}


def missing_table(table_dir):
    gbk.set_table_dir(table_dir)
    try:
        gbk.encode("医")
    except OSError:
        return "OSError"
    except ValueError as e:
        return "ValueError: " + str(e)
    return "no error"
