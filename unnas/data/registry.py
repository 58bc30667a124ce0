from unnas.registry import Registry

DATASETS = Registry("data set")
