"""Speech: features and their store, the k-means unit tokenizer, the vocoder and its training, the speaker, the judge ASRs."""
