"""The simulated programmable PSU: a multi-channel supply's electrical model (supply.py) behind a
Keysight-style SCPI instrument (scpi.py, instrument.py) served on TCP (server.py), where a LAN PSU
stands. The bench reaches it through pyvisa-py (`TCPIP0::127.0.0.1::<port>::SOCKET`); the
simulated device subscribes to its output changes to lose power. It must not import the host
side (bench.power, pyvisa). Model and dialect: docs/power.md "Simulated PSU"; docs/simulator.md.
"""
