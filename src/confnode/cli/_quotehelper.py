"""``confnode quote-helper`` and ``confnode node probe``: AESM-compatible out-of-process quoting."""
