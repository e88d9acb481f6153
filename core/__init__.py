"""What the gateway (``service``) and the worker (``worker``) share, with no torch and no web
framework: the job contract, the sampler settings and their presets, the job store, storage,
settings, URL safety and media probing."""
