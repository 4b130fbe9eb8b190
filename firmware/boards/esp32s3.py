# ESP32-S3-DevKitC-1: its three hardware UARTs drive the card reader, printer and display, and the
# gateway is reached over Wi-Fi (a serial gateway would need a fourth UART). Pin map in
# boards/esp32s3.json (hardware/wiring.md).
# UART0 drives the display, so the image must keep its REPL on the native USB port only
# (hardware/hil.md, "Firmware image").
from boards.mcu import McuBoard


class Board(McuBoard):
    name = "esp32s3"

    def light_timer(self):
        import machine

        return machine.Timer(0)  # the ESP32 has hardware timers only (0-3)


def prepare_random():
    # The ESP32's hardware RNG (os.urandom) is truly random only while the radio runs; with
    # Wi-Fi and Bluetooth off it is pseudo-random (Espressif, esp_random). The kiosk's signing
    # key is made at provisioning, before main.py has brought Wi-Fi up: turn the radio on first
    # (it need not connect).
    import network

    network.WLAN(network.STA_IF).active(True)
