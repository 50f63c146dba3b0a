"""NAO recurrent cells on PTB / WikiText-2: search space, corpus, language model and supernet,
the NAO-WS (`train_search`) and NAO (`train_search_nao`) searches, and final training."""

import nao_tf  # noqa: F401,E402  (TensorFlow loads without its start-up lines)
