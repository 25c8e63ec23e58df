"""``confnode attestation serve``: the MAA-compatible attestation service."""
