"""Using a finished classifier run: load_model, predict, evaluate, export (one module each)."""

from longtail.inference.evaluate import evaluate
from longtail.inference.export import export
from longtail.inference.model import Classifier, PortableClassifier, load_model, open_run
from longtail.inference.predict import image_files, predict, predictions_csv, write_predictions

__all__ = ["Classifier", "PortableClassifier", "evaluate", "export", "image_files", "load_model", "open_run", "predict",
           "predictions_csv", "write_predictions"]
