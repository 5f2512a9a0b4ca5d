"""Training loops (the library behind ``oder-edu train ...``): the denoisers, DEQ/ODER models,
and data parallelism under torchrun."""
