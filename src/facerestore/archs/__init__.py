"""Network architectures with the official parameter names (plain nn.Modules, no I/O)."""
