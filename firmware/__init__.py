"""Kiosk firmware (MicroPython). Shipped as data for the host tools; runs only on MicroPython."""
