"""Evaluation: generation, text normalisation, statistics, and the scoring of ASR, TTS, audio-LM and spoken QA."""
