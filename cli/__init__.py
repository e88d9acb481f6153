"""The ``mmd`` command (``cli.main``): gateway, worker and ``mmd serve`` together."""
