"""Dataset preparation: the embedded demo dataset and other preprocessing steps."""
