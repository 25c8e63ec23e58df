"""``confnode webhook serve``: the SGX admission webhook."""
