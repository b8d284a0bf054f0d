from longtail.models.seed_cnn import SeedCNN, SeedCNNConfig

__all__ = ["SeedCNN", "SeedCNNConfig"]
