"""Networks, one module per kind of network: tensors in, tensors out. They know nothing of configs
or families; each recipe (``genlab.recipes``) builds the networks its runs train and save."""
