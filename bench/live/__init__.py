"""The live station page (`paygo-bench run --ui`): what the run is doing, in a browser."""
