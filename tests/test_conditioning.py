"""Audio through the text slot (lvmm.conditioning): which clips hear their audio, and the centring shift."""

import torch

from lvmm.conditioning import TEXT_SLOT, SlotShift, audio_in_text_slot, draw_audio, shift_to_slot


def test_draw_audio_probability_and_clips_without_text():
    has_aud = torch.tensor([True, True, False, True] * 500)
    has_txt = torch.tensor([True, False, True, True] * 500)
    g = torch.Generator().manual_seed(0)
    assert not draw_audio(has_aud, has_txt, 0.0, g).any()  # 0 turns audio off, even without text
    use = draw_audio(has_aud, has_txt, 0.3, g)
    assert not use[~has_aud].any() and use[has_aud & ~has_txt].all()
    share = use[has_aud & has_txt].float().mean().item()
    assert 0.25 < share < 0.35
    assert draw_audio(has_aud, has_txt, 1.0, g).equal(has_aud)


def test_audio_in_text_slot_replaces_and_shifts():
    txt, aud = torch.randn(3, 8), torch.randn(3, 8)
    has_txt = torch.tensor([True, False, False])
    use = torch.tensor([True, True, False])
    m_a, m_t = torch.randn(8), torch.randn(8)
    slot, present = audio_in_text_slot(txt, has_txt, aud, use, m_a, m_t)
    torch.testing.assert_close(slot[:2], aud[:2] - m_a + m_t)
    torch.testing.assert_close(slot[2], txt[2])
    assert present.tolist() == [True, True, False]
    plain, _ = audio_in_text_slot(txt, has_txt, aud, use)  # no means: unshifted
    torch.testing.assert_close(plain[:2], aud[:2])


def test_slot_shift_moves_only_the_text_token_after_the_sampler_normalised_it():
    seen = {}

    def denoiser(x, t, tokens=None, token_mask=None, **kw):
        seen["tokens"] = tokens
        return x

    shift = torch.randn(4)
    tokens = torch.randn(2, 2, 4)
    SlotShift(denoiser, shift)(torch.zeros(1), torch.zeros(1), tokens=tokens, token_mask=None)
    torch.testing.assert_close(seen["tokens"][:, TEXT_SLOT], tokens[:, TEXT_SLOT] + shift)
    torch.testing.assert_close(seen["tokens"][:, 0], tokens[:, 0])
    torch.testing.assert_close(shift_to_slot(tokens[:, 1], shift, shift), tokens[:, 1])
