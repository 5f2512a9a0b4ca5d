"""oder-edu: from imaging inverse problems to PnP/RED, Deep Equilibrium models and ODER."""

__version__ = "0.1.0"
