"""``confnode doctor``, ``confnode device-plugin`` and ``confnode plugin probe``: the node agent."""
