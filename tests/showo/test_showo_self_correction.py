"""Self-correction sequence format: round trip, omni-attention compatibility, one CPU fine-tuning step."""
from __future__ import annotations

import json

import pytest
import torch

from showo.loss import IGNORE_INDEX, t2i_loss
from showo.prompting import t2i_attention_mask
from showo.self_correction import (SelfCorrectionDataset, SelfCorrectionFormat, build_self_correction_batch,
                                   write_self_correction_dataset)
from tests.search.search_doubles import tiny_bundle

F = 4


@pytest.fixture(scope="module")
def bundle():
    return tiny_bundle()


def _ids(bundle, text):
    return bundle.tokenizer(text, add_special_tokens=False)["input_ids"]


def test_build_parse_round_trip(bundle):
    fmt = SelfCorrectionFormat(bundle.layout, max_feedback_length=F)
    lay, sc = bundle.layout, fmt.sc_layout
    prompts = [_ids(bundle, "a red circle"), _ids(bundle, "a blue square")]
    feedback = [_ids(bundle, "wrong color"), []]
    prev = torch.tensor([[(3 * i + k) % lay.codebook_size for k in range(lay.num_image_tokens)] for i in range(2)])
    target = prev.flip(1) + lay.image_offset
    seqs = fmt.build(prompts, feedback, prev, target)
    assert seqs.shape == (2, sc.seq_len)
    assert sc.text_len == lay.text_len + F + 2 + lay.num_image_tokens + 2
    for row, p, f, c, t in zip(seqs, prompts, feedback, prev, target):
        pp, ff, cc, tt = fmt.parse(row)
        assert (pp, ff) == (p, f) and torch.equal(cc, c) and torch.equal(tt, t)
    # the new image sits where a t2i sequence of sc_layout has it, behind exactly one <|soi|>
    assert (seqs[:, sc.soi_pos] == sc.soi_id).all() and (seqs[:, -1] == sc.eoi_id).all()
    assert ((seqs == sc.soi_id).sum(1) == 1).all()


def test_omni_attention_mask_sees_feedback_and_previous_image(bundle):
    fmt = SelfCorrectionFormat(bundle.layout, max_feedback_length=F)
    sc, n = fmt.sc_layout, bundle.layout.num_image_tokens
    seq = fmt.build([_ids(bundle, "a red circle")], [_ids(bundle, "wrong")], torch.zeros(1, n, dtype=torch.long))
    mask = t2i_attention_mask(seq, sc)[0, 0]
    content = seq[0] != sc.pad_id
    image_rows = mask[sc.image_slice]
    assert torch.equal(image_rows, content.expand_as(image_rows))  # every new-image token sees all non-pad tokens
    prev = slice(sc.text_len - n - 1, sc.text_len - 1)
    assert not mask[prev.start - 3, prev].any()  # feedback rows do not see the (later) previous image: causal
    with pytest.raises(ValueError, match="not plain text tokens"):
        fmt.build([[bundle.layout.eos_id]], [[]], torch.zeros(1, n, dtype=torch.long))
    with pytest.raises(ValueError, match="outside"):
        fmt.build([[]], [[]], torch.full((1, n), bundle.layout.codebook_size))


def test_one_fine_tuning_step_on_cpu(bundle, tmp_path):
    lay = bundle.layout
    n = lay.num_image_tokens
    bad = torch.stack([torch.arange(n) % 7, torch.ones(n, dtype=torch.long)])
    good = torch.stack([(5 * torch.arange(n)) % lay.codebook_size, torch.full((n,), 2)])
    write_self_correction_dataset(tmp_path / "sc", ["a red circle", "a blue square"], ["wrong color", "missing square"],
                                  bad, good)
    data = SelfCorrectionDataset(tmp_path / "sc", max_feedback_length=F, cond_dropout_prob=0.0)
    data.check(lay)
    assert len(data) == 2
    # the protocol scripts/train_showo.py calls: batch(indices, layout, tokenizer, generator)
    batch = data.batch([0, 1], lay, bundle.tokenizer, torch.Generator().manual_seed(0))
    sc = data.format(lay).sc_layout
    assert batch["input_ids"].shape == (2, sc.seq_len) and batch["attention_mask"].shape == (2, 1, sc.seq_len, sc.seq_len)
    prompt_ids, feedback_ids, prev, _ = data.format(lay).parse(batch["input_ids"][1])
    assert bundle.tokenizer.decode(feedback_ids) == "missing square" and torch.equal(prev, bad[1])
    labelled = batch["labels"][:, sc.image_slice] != IGNORE_INDEX
    assert labelled.any(1).all()
    assert torch.equal(batch["labels"][:, sc.image_slice][labelled], (good + lay.image_offset)[labelled])
    assert (batch["input_ids"][:, sc.image_slice][labelled] == sc.mask_id).all()
    model = bundle.model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    logits = model(batch["input_ids"], batch["attention_mask"]).logits
    loss = t2i_loss(logits, batch["labels"], lay)  # the recipe passes the t2i layout: same loss (labels -100 before)
    assert loss.item() == pytest.approx(t2i_loss(logits, batch["labels"], sc).item(), rel=1e-6)
    loss.backward()
    opt.step()
    model.eval()
    assert torch.isfinite(loss)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed


def test_dropped_conditioning_is_the_pipeline_unconditional(bundle):
    fmt = SelfCorrectionFormat(bundle.layout, max_feedback_length=F)
    n = bundle.layout.num_image_tokens
    batch = build_self_correction_batch(fmt, [_ids(bundle, "a red circle")], [[]], torch.zeros(1, n, dtype=torch.long),
                                        torch.ones(1, n, dtype=torch.long), torch.Generator().manual_seed(0),
                                        cond_dropout_prob=1.0)
    text = batch["input_ids"][0, : fmt.sc_layout.text_len]
    sc = fmt.sc_layout
    assert text[-3:].tolist() == [sc.t2i_id, sc.bos_id, sc.eos_id] and (text[:-3] == sc.pad_id).all()


def test_dataset_errors_name_file_and_field(bundle, tmp_path):
    n = bundle.layout.num_image_tokens
    codes = torch.zeros(1, n, dtype=torch.long)
    write_self_correction_dataset(tmp_path / "ok", ["a"], ["b"], codes, codes)
    (tmp_path / "ok" / "groups.jsonl").write_text(json.dumps({"prompt": "a", "feedback": 3}) + "\n")
    with pytest.raises(ValueError, match=r"groups.jsonl:1: field 'feedback'"):
        SelfCorrectionDataset(tmp_path / "ok")
    with pytest.raises(FileNotFoundError, match="missing"):
        SelfCorrectionDataset(tmp_path / "missing")
    write_self_correction_dataset(tmp_path / "big", ["a"], ["b"], codes + 99, codes)
    with pytest.raises(ValueError, match="bad codes outside"):
        SelfCorrectionDataset(tmp_path / "big").check(bundle.layout)
