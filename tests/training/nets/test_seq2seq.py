"""The seq2seq Transformer: causal decoder, source padding ignored, decoder step = last position."""

import torch

from app.training.nets.seq2seq import DecoderStepGraph, EncoderGraph, Seq2SeqShape, Seq2SeqTransformer


def tiny_model():
    torch.manual_seed(0)
    return Seq2SeqTransformer(Seq2SeqShape(vocab_size=30, d_model=16, heads=2, encoder_layers=1, decoder_layers=1,
                                           feedforward=32, dropout=0.0)).eval()


def test_decoder_is_causal_and_the_step_graph_returns_the_last_position():
    model = tiny_model()
    source = torch.tensor([[5, 6, 7, 2]])
    target = torch.tensor([[1, 8, 9, 10]])
    changed = target.clone()
    changed[0, 3] = 11
    with torch.no_grad():
        logits, logits_changed = model(source, target), model(source, changed)
        assert torch.allclose(logits[:, :3], logits_changed[:, :3], atol=1e-6)
        assert not torch.allclose(logits[:, 3], logits_changed[:, 3])
        memory = EncoderGraph(model)(source)
        step = DecoderStepGraph(model)(target[:, :3], memory, torch.ones_like(source))
        assert torch.allclose(step, logits[:, 2], atol=1e-5)


def test_source_padding_changes_nothing():
    model = tiny_model()
    short = torch.tensor([[5, 6, 2]])
    padded = torch.tensor([[5, 6, 2, 0, 0]])
    target = torch.tensor([[1, 8]])
    with torch.no_grad():
        assert torch.allclose(model(short, target), model(padded, target), atol=1e-5)
