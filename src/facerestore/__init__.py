"""facerestore: blind face restoration (GFPGAN family) in plain PyTorch."""
__version__ = "0.1.0"
