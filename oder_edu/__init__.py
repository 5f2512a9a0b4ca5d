"""oder-edu: from imaging inverse problems to PnP/RED, Deep Equilibrium models and ODER. The course
lives in ``notebooks/``; this package runs every reconstruction in it."""

__version__ = "0.1.0"

# The one place the repository's address is written; README badges and the notebooks'
# Colab set-up cells must agree with it (tests/test_packaging.py checks).
REPOSITORY = "https://github.com/oder-edu/oder-edu"
