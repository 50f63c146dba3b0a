"""NAO recurrent cells on PTB / WikiText-2: search space, corpus, language model, training."""
