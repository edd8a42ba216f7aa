"""Evaluation: text normalisation and scoring shared by every judge and metric."""
