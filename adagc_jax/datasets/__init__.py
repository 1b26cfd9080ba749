"""TFDS builders. Importing this package registers every builder with TFDS."""
