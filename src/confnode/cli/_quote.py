"""``confnode quote inspect|verify``: SGX DCAP quote parsing and verification."""
