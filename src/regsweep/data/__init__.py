"""Data sets in, tensors out: readers, splits and the device they live on."""
