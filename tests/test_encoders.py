"""Text encoder (local HF folders) and SAM2 Hiera image encoder (real sam2 package, random weights)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vessa.errors import CheckpointError
from vessa.networks.sam2_encoder import Sam2EncoderAdapter, build_sam2_image_encoder
from vessa.networks.text_encoder import TextEncoder, class_prompts, default_text_model_path

WORDS = "a medical image showing the left right ventricle ventricular cavity myocardium atrium background liver".split()


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> Path:
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny_bert")
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    BertModel(config).save_pretrained(folder)
    BertTokenizer(str(vocab)).save_pretrained(folder)
    return folder


def test_text_encoder_tiny_bert(tiny_bert):
    enc = TextEncoder(str(tiny_bert), max_length=16)
    assert enc.dim == 32
    texts = ["left ventricle", "myocardium", "a medical image showing the liver"]
    out = enc(texts)
    assert out.shape == (3, 32)
    assert torch.allclose(out.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert not torch.allclose(out[0], out[1])
    assert all(not p.requires_grad for p in enc.parameters())

    cached = enc.encode_cached(texts)
    assert torch.allclose(cached, out, atol=1e-5)
    again = enc.encode_cached(texts[::-1])
    assert torch.equal(again, cached.flip(0))
    assert set(enc._cache) == set(texts)


def test_text_encoder_missing_folder(tmp_path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(CheckpointError, match="no_such_model"):
        TextEncoder(str(missing))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="config.json"):
        TextEncoder(str(tmp_path / "empty"))


def test_class_prompts():
    names = {2: "myocardium", 0: "background", 1: "left_ventricle"}
    assert class_prompts(names) == [
        "a medical image showing the left ventricle",
        "a medical image showing the myocardium",
    ]
    assert class_prompts(names, template="{name}") == ["left ventricle", "myocardium"]


def test_default_text_model():
    path = Path(default_text_model_path())
    assert (path / "config.json").is_file()
    enc = TextEncoder()
    assert enc.dim == 384
    e = enc.encode_cached(["left ventricle", "left ventricular cavity", "background"])
    assert e.shape == (3, 384)
    assert float(e[0] @ e[1]) > float(e[0] @ e[2])


SAM2_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"


def test_sam2_adapter_random_weights():
    torch.manual_seed(0)
    adapter = Sam2EncoderAdapter(out_dim=8, embed_hw=(16, 16), config=SAM2_CONFIG, freeze=True, input_size=128)
    assert adapter.out_dim == 8
    out = adapter(torch.rand(2, 1, 64, 64))
    assert out.shape == (2, 8, 16, 16)
    assert torch.isfinite(out).all()
    assert all(not p.requires_grad for p in adapter.encoder.parameters())
    trainable = [n for n, p in adapter.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("proj.") for n in trainable)
    out.sum().backward()
    assert adapter.proj.weight.grad is not None
    adapter.train()
    assert not adapter.encoder.training
    # RGB input also works
    assert adapter(torch.rand(1, 3, 40, 56)).shape == (1, 8, 16, 16)
    with pytest.raises(ValueError):
        Sam2EncoderAdapter(out_dim=8, embed_hw=(16, 16), input_size=100)


def test_sam2_missing_checkpoint(tmp_path):
    missing = tmp_path / "sam2.1_hiera_tiny.pt"
    with pytest.raises(CheckpointError, match="sam2.1_hiera_tiny.pt"):
        build_sam2_image_encoder(SAM2_CONFIG, checkpoint=str(missing))
    with pytest.raises(CheckpointError, match="sam2.1_hiera_tiny.pt"):
        Sam2EncoderAdapter(out_dim=4, embed_hw=(8, 8), checkpoint=str(missing))


def test_sam2_checkpoint_roundtrip(tmp_path):
    from sam2.build_sam import build_sam2

    torch.manual_seed(123)
    full = build_sam2(SAM2_CONFIG, ckpt_path=None, device="cpu", mode="eval")
    with torch.no_grad():
        full.image_encoder.trunk.patch_embed.proj.weight.normal_()
    ckpt = tmp_path / "fake_sam2.pt"
    torch.save({"model": full.state_dict()}, ckpt)

    torch.manual_seed(0)
    enc = build_sam2_image_encoder(SAM2_CONFIG, checkpoint=str(ckpt))
    ref = full.image_encoder.state_dict()
    got = enc.state_dict()
    assert set(got) == set(ref)
    for key in ("trunk.patch_embed.proj.weight", "neck.convs.0.conv.weight"):
        assert torch.equal(got[key], ref[key])

    # a checkpoint that lacks image_encoder weights is refused
    bad = tmp_path / "bad.pt"
    torch.save({"model": {k: v for k, v in full.state_dict().items() if not k.startswith("image_encoder.trunk")}}, bad)
    with pytest.raises(CheckpointError, match="image_encoder"):
        build_sam2_image_encoder(SAM2_CONFIG, checkpoint=str(bad))
