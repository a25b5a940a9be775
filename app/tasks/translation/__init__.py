"""Translation: encoder once, then a decode loop over the decoder_step graph (``decoding``)."""
