"""Scanning files with a trained detector: file -> features -> ONNX model -> verdict, explained.

Only onnxruntime, numpy and :mod:`fedmetamal.features` are used here, never torch, so a scanner
installs and starts light (``tests/detect/test_no_torch.py`` keeps it that way).
"""

from __future__ import annotations

from fedmetamal.detect.model import Detector, load_detector
from fedmetamal.detect.scan import ScanOptions, ScanResult, Verdict, scan_paths

__all__ = ["Detector", "ScanOptions", "ScanResult", "Verdict", "load_detector", "scan_paths"]
