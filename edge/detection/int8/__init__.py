"""INT8: calibration sets, quantisation, and the accuracy guard."""
