"""The DARTS search space (Liu, Simonyan, Yang, ICLR 2019)."""
from .genotype import Genotype, GenotypeError, derive_genotype
from .ops import PRIMITIVES
from .space import DartsSpace
from .supernet import ArchParameters, ArchWeights, SearchModel, SupernetTrunk

__all__ = ["Genotype", "GenotypeError", "derive_genotype", "PRIMITIVES", "DartsSpace",
           "ArchParameters", "ArchWeights", "SearchModel", "SupernetTrunk"]
