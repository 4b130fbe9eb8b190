# Run as a script under MicroPython: draws counter values as fast as it can, printing each one
# after the counter handed it out (as a request would be sent), until it is killed.
#     micropython app_counter_run.py COUNTER_PATH BLOCK
import sys

from app.counter import Counter

counter = Counter(sys.argv[1], int(sys.argv[2]))
while True:
    print(counter.next())
