"""Models: the torch CNN estimator and the embedding classifier. Importing this package imports
torch (torchvision only when a backbone is built)."""
from pseudolabel.models.cnn import ConvNetClassifier
from pseudolabel.models.embed import EmbeddingClassifier

__all__ = ["ConvNetClassifier", "EmbeddingClassifier"]
