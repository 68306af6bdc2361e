"""Models: the torch CNN estimator. Importing this package imports torch."""
from pseudolabel.models.cnn import ConvNetClassifier

__all__ = ["ConvNetClassifier"]
