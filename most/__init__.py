"""MoST reproduction: Mixing Speech and Text with a Modality-Aware Mixture of Experts."""

__version__ = "0.1.0"
