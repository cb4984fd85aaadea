"""Training data from a collection's own text: synthetic queries, quality filters, hard negatives."""
