"""paygo-bench: a hardware-in-the-loop test bench for OpenPAYGO devices."""

__version__ = "0.1.0"
