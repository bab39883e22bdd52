"""The detector's trainer: TF Model Garden's RetinaNet on a conversion output (``python -m trainer``)."""
