"""The virtual rig's device side: simulated board, firmware, NVM, RTC and PSU, and the defects
they can be built with (docs/simulator.md)."""
