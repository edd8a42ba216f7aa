"""MoST reproduction: Mixing Speech and Text with a Modality-Aware Mixture of Experts."""

from pathlib import Path

__version__ = "0.1.0"

REPO_ROOT = Path(__file__).resolve().parents[1]  # a checkout: config/, workflow/ and the code the stages' digests cover
