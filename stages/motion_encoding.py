"""Stage one as a predictor: video clips in, latent motion records out (Lightning's predict loop).

Running in the predict loop gives multi-GPU and multi-node encoding with DDP for free; each rank
reads its own input shards and :class:`lvmm.datasets.latent_encoding.LatentShardWriter` writes its
own output shards.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from lvmm.controls import motion_amount
from lvmm.media import AUDIO_RATE, to_uint8
from lvmm.motion import MotionModel

DEFAULT_THRESHOLD = 50.0
"""Drop a clip whose last frame re-renders with a mean squared error above this (0-255 scale, ~31 dB)."""


class MotionEncoding(pl.LightningModule):
    """Encode each clip {I_0..I_K} to z_0..z_K = E(P(I_0, I_k)) plus ImageBind embeddings.

    Args:
        motion: the trained stage one.
        encoder: an :class:`lvmm.imagebind.ImageBindEncoder` for the first frame, the caption and the clip's
            audio (the batch's ``meta[i]["audio"]``, 16 kHz mono, when it has one).
        threshold: reconstruction-error threshold (MSE on the 0-255 scale) of the last frame.
    """

    def __init__(self, motion: MotionModel, encoder, threshold: float = DEFAULT_THRESHOLD):
        super().__init__()
        self.motion = motion
        self.encoder = encoder
        self.threshold = threshold

    @torch.no_grad()
    def predict_step(self, batch, batch_idx):
        frames = batch["frames"]
        if frames.numel() == 0:
            return {"kept": [], "dropped": 0}
        frames = frames.to(self.device)  # (B, K+1, 3, H, W)
        z = self.motion.encode_clip(frames)  # (B, K+1, 4, h, w)
        last = self.motion.render(frames[:, 0], self.motion.decode(z[:, -1:]))[:, 0]  # (B, 3, H, W)
        mse = ((last.clamp(0, 1) - frames[:, -1]) * 255).pow(2).flatten(1).mean(1)
        keep = (mse <= self.threshold).nonzero().flatten().tolist()
        if not keep:
            return {"kept": [], "dropped": len(mse)}
        firsts = to_uint8(frames[keep, 0])  # (n, H, W, 3)
        img_emb = self.encoder.embed_images(list(firsts)).cpu().numpy()
        captions = [batch["meta"][i]["caption"] for i in keep]
        with_text = [j for j, c in enumerate(captions) if c]
        txt_emb = self.encoder.embed_texts([captions[j] for j in with_text]).cpu().numpy() if with_text else None
        sounds = [batch["meta"][i].get("audio") for i in keep]
        with_audio = [j for j, a in enumerate(sounds) if a is not None]
        aud_emb = (
            self.encoder.embed_audio([(sounds[j], AUDIO_RATE) for j in with_audio]).cpu().numpy()
            if with_audio
            else None
        )
        # each frame's mean displacement (px of the field grid), so stage two's motion amount of any prefix
        # of the clip needs no decoding while training (lvmm.controls.motion_amount is their mean)
        fields = self.motion.decode_motion(z[keep, 1:], z[keep, 0])  # (n, K, 3, h, w)
        frame_amounts = torch.stack([motion_amount(fields[:, k : k + 1]) for k in range(fields.shape[1])], 1)
        records = []
        for n, i in enumerate(keep):
            meta = {k: v for k, v in batch["meta"][i].items() if k != "audio"}  # samples go to aud_emb, not json
            meta = dict(
                meta,
                has_audio=n in with_audio,
                frame_amounts=[round(float(a), 6) for a in frame_amounts[n]],
                reconstruction_mse=float(mse[i]),
                threshold=self.threshold,
                imagebind_weights=self.encoder.weights_id,
            )
            records.append(
                {
                    "key": batch["keys"][i],
                    "motion": z[i].float().cpu().numpy(),
                    "img_emb": img_emb[n],
                    "txt_emb": txt_emb[with_text.index(n)] if n in with_text else None,
                    "aud_emb": aud_emb[with_audio.index(n)] if n in with_audio else None,
                    "first": firsts[n],
                    "json": meta,
                }
            )
        return {"kept": records, "dropped": len(mse) - len(keep)}
