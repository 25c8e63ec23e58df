"""``confnode sim``, ``pccs serve``, ``collateral fetch``: the simulated platform."""
