"""NAO recurrent cells on PTB / WikiText-2: search space, corpus, language model and supernet,
the NAO-WS (`train_search`) and NAO (`train_search_nao`) searches, and final training."""
