"""The detection matrix: the device suite run against every defect in the simulator's fault
catalogue, so a lab can see which check catches which defect (docs/detection-matrix.md)."""
