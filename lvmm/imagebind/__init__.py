"""ImageBind image, text and audio encoders that load the official ``imagebind_huge`` checkpoint.

An independent implementation of ImageBind (Girdhar et al., CVPR 2023) with the official module
tree and state-dict key names, the official preprocessing (bit-exact image and audio transforms,
CLIP BPE tokenizer) and an embedding service with an on-disk cache. The official weights are not
shipped or downloaded: the user passes the path of ``imagebind_huge.pth``, which is licensed
CC BY-NC-SA 4.0 (non-commercial use only). Without weights, a seeded random model of the same
architecture stands in (tests, demo)::

    from lvmm.imagebind import ImageBindEncoder
    enc = ImageBindEncoder(weights="imagebind_huge.pth")   # or weights=None, config="tiny"
    img, txt = enc.embed_images(["cat.jpg"]), enc.embed_texts(["a cat"])
"""

from .audio import kaldi_fbank, load_audio, preprocess_audio, waveform_to_clips
from .configs import HUGE, MODALITIES, TINY, ImageBindConfig, resolve_config
from .encoder import ImageBindEncoder, announce_random_model, condition_embedding
from .model import ImageBind
from .text import BPETokenizer, get_tokenizer
from .vision import preprocess_image, preprocess_images
from .weights import load_state_dict_file, state_dict_id

ImageBindModel = ImageBind  # the official class name

__all__ = [
    "HUGE",
    "TINY",
    "MODALITIES",
    "BPETokenizer",
    "ImageBind",
    "ImageBindConfig",
    "ImageBindEncoder",
    "ImageBindModel",
    "announce_random_model",
    "condition_embedding",
    "get_tokenizer",
    "kaldi_fbank",
    "load_audio",
    "load_state_dict_file",
    "preprocess_audio",
    "preprocess_image",
    "preprocess_images",
    "resolve_config",
    "state_dict_id",
    "waveform_to_clips",
]
