"""Data: sources -> validation split -> imbalance -> rebalance -> batches.

Nothing is imported here, so a module that needs one piece (the report needs imbalance.py) does
not pay for the image decoders.
"""
