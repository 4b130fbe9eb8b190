# The kiosk firmware's entry point. Stays source (boards run main.py); everything it imports is
# precompiled by `kiosk fw build`. On a board the flash root is the current directory; on the
# unix port the launcher passes the flash directory as the first argument.
import sys

from app import boot

boot.main(sys.argv[1] if len(sys.argv) > 1 else "")
