"""Training loops behind ``oder-edu train ...``: the shipped denoiser and DEQ/ODER models."""
