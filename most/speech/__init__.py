"""Speech units: features, the k-means unit tokenizer, the vocoder, the judge ASR, and their stages."""
