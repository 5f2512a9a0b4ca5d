"""The real images of the course, installed as the package ``oder_edu.data`` (pyproject.toml maps
this folder there), so ``oder_edu.images.real_image`` finds them from a clone, on Binder and
from an installed wheel alike. README.md says where each file comes from; make_data.py made them."""
