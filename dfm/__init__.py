"""dfm: .dfm scene scripts → Stable Diffusion animations."""

__version__ = "0.1.0"
