# ruff: noqa: F821 - metadata, include and package are given by MicroPython's makemanifest
# Freezing the kiosk firmware into a MicroPython image, as an alternative to copying .mpy files:
#     kiosk fw build --board esp32s3 --source --out STAGE
#     make -C ports/esp32 BOARD=ESP32_GENERIC_S3 FROZEN_MANIFEST=STAGE/manifest.py
# (staging copies this file to STAGE, beside app/, boards/, drivers/ and onestop/protocol/).
# main.py, the pin map (at the flash root), config.json and the GBK tables still go on the flash
# filesystem: `kiosk fw deploy --build STAGE --frozen` puts them there and removes module files
# and code folders, which the flash's place first on the import path would put before these.
metadata(description="Onestop self-service settlement kiosk firmware", version="1.0.0")
include("$(PORT_DIR)/boards/manifest.py")
package("app")
package("boards")
package("drivers")
package("onestop")
