"""Few-shot NAS on NAS-Bench-201: supernets split by zero-cost metrics, and their split distances."""

__version__ = "0.1.0"
