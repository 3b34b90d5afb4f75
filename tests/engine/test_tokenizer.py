from studio.engine.clip_vocab import build_clip_tokenizer


def test_real_clip_ids():
    tok = build_clip_tokenizer()
    assert len(tok) == 49408
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_sd2_style_padding_token():
    tok = build_clip_tokenizer(pad_token="!")
    assert tok.pad_token_id == 0
    assert tok("cat", padding="max_length").input_ids[-1] == 0
