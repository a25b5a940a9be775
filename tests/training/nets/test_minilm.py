"""Our BERT matches Hugging Face's BertModel on the same (tiny, random) checkpoint, so the real
all-MiniLM-L6-v2 weights load with the intended meaning."""

import pytest
import torch

from app.training.nets.minilm import BertClassifier, BertShape

transformers = pytest.importorskip("transformers")


def test_loads_a_hugging_face_bert_checkpoint_and_matches_its_mean_pooled_output(tmp_path):
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=40)
    torch.manual_seed(0)
    reference = transformers.BertModel(config).eval()
    reference.save_pretrained(tmp_path)  # model.safetensors, config.json

    ours = BertClassifier(BertShape.from_hf_config(tmp_path / "config.json"), num_labels=3)
    ours.load_pretrained(tmp_path / "model.safetensors")
    ours.eval()
    ids = torch.randint(1, 50, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    with torch.no_grad():
        hidden = reference(input_ids=ids, attention_mask=mask).last_hidden_state
        expected = (hidden * mask[:, :, None]).sum(1) / mask.sum(1, keepdim=True)
        ours_hidden = ours.hidden_before(ids, mask, layer_index=2)
        pooled = (ours_hidden * mask[:, :, None]).sum(1) / mask.sum(1, keepdim=True)
        assert torch.allclose(pooled, expected, atol=1e-5)
        # the cached-lower-layers path gives the same logits as the whole model
        assert torch.allclose(ours.forward_from(ours.hidden_before(ids, mask, 1), mask, 1), ours(ids, mask), atol=1e-6)


def test_rejects_a_checkpoint_of_another_shape(tmp_path):
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=40)
    transformers.BertModel(config).save_pretrained(tmp_path)
    two_layers = BertClassifier(BertShape(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                          intermediate_size=32, max_position_embeddings=40), num_labels=3)
    with pytest.raises(ValueError, match="missing"):
        two_layers.load_pretrained(tmp_path / "model.safetensors")
