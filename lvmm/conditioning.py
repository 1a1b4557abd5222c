"""Audio conditioning through the text slot: which samples hear their audio, and how an audio token is centred.

Stage two has two condition tokens, (image, text). An audio prompt has no slot of its own: like the
Animator's ``--audio`` prompt, a clip's soundtrack embedding (``aud_emb``) takes the *text* slot. In
training, :func:`audio_in_text_slot` puts it there for a random share of the clips that have audio.

Centring: the U-Net standardises each slot with the mean of the tokens it was fitted on (see
:mod:`lvmm.stages.stage_two`); the text slot's mean is the captions'. ImageBind embeddings of one
modality lie close together (cosine ~0.98 under the random encoder), and far from another modality's,
so an audio token centred on the captions' mean is mostly the constant offset between the two
modalities, the same for every clip, and the per-clip differences that carry the motion are lost in
it. Audio tokens are therefore centred on the audio mean instead: :func:`shift_to_slot` moves an
audio token by ``slot_mean - audio_mean`` before the U-Net subtracts ``slot_mean``, so the network sees
``audio - audio_mean``. Training (:class:`lvmm.stages.stage_two.StageTwo`) and sampling
(:class:`lvmm.animation.Animator` with an audio prompt, through :class:`SlotShift`) apply the same shift,
with the audio mean stored in the checkpoint's ``lvmm_extra["audio_token_mean"]``.
"""

from __future__ import annotations

import torch

TEXT_SLOT = 1
"""Index of the text slot among the condition tokens (``lvmm.stages.stage_two.TOKEN_NAMES``)."""


def shift_to_slot(emb: torch.Tensor, modality_mean: torch.Tensor, slot_mean: torch.Tensor) -> torch.Tensor:
    """``emb - modality_mean + slot_mean``: a token the slot's standardisation centres on its own modality's mean."""
    return emb + (slot_mean - modality_mean).to(emb)


def draw_audio(has_aud: torch.Tensor, has_txt: torch.Tensor, probability: float, generator=None) -> torch.Tensor:
    """Which samples (B,) bool condition on their audio instead of their text.

    A clip with audio does with ``probability``, and always when it has no text (its text slot would be
    empty otherwise); ``probability`` 0 turns audio off altogether.
    """
    has_aud = has_aud.bool()
    if probability <= 0:
        return torch.zeros_like(has_aud)
    draw = torch.rand(has_aud.shape, generator=generator, device="cpu").to(has_aud.device) < probability
    return has_aud & (draw | ~has_txt.bool())


def audio_in_text_slot(
    txt_emb: torch.Tensor,
    has_txt: torch.Tensor,
    aud_emb: torch.Tensor,
    use_audio: torch.Tensor,
    audio_mean: torch.Tensor | None = None,
    text_mean: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The text slot's tokens (B, D) and presence (B,) with ``aud_emb`` where ``use_audio``.

    With both means given (unit-length embeddings' means, (D,)), audio tokens are shifted by
    :func:`shift_to_slot` so the slot's standardisation centres them on ``audio_mean``.
    """
    aud = aud_emb.to(txt_emb)
    if audio_mean is not None and text_mean is not None:
        aud = shift_to_slot(aud, audio_mean, text_mean)
    use = use_audio.to(txt_emb.device).bool()
    return torch.where(use[:, None], aud, txt_emb), has_txt.to(use.device).bool() | use


class SlotShift:
    """A denoiser whose text-slot token is shifted by ``shift`` (D,) before it reaches ``denoiser``.

    The sampler normalises the prompt embedding to unit length before the network; the shift must come
    after that, so it wraps the network rather than the embedding. Other attributes pass through.
    """

    def __init__(self, denoiser, shift: torch.Tensor, slot: int = TEXT_SLOT):
        self.denoiser, self.shift, self.slot = denoiser, shift, slot

    def __getattr__(self, name):
        return getattr(self.denoiser, name)

    def __call__(self, x, t, *args, tokens: torch.Tensor | None = None, **kw):
        if tokens is not None:
            tokens = tokens.clone()
            tokens[:, self.slot] = tokens[:, self.slot] + self.shift.to(tokens)
        return self.denoiser(x, t, *args, tokens=tokens, **kw)
