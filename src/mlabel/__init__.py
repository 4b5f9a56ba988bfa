"""mlabel: multi-label text classification with transformer encoders."""

from mlabel.classifier import Classifier
from mlabel.config import TrainConfig
from mlabel.data import DataError, load_examples, read_table

load_table = read_table

__all__ = ["Classifier", "DataError", "TrainConfig", "load_examples", "load_table", "read_table"]
