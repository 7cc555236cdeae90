"""The repository's root conftest. The bench's fixtures, options and report hooks are its pytest
plugin, `bench.fixtures.plugin` (the folder fixtures/), registered through the `pytest11` entry
point of the installed package (`pip install -e .`): the same plugin a lab gets from the wheel,
so nothing is registered twice here."""
