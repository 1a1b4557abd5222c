"""LVMM: a two-stage latent motion-field model that animates still images.

`lvmm` holds networks, diffusion schedules and guidance, conditioning, rendering and media I/O.
It imports nothing from `lvmm.stages` (training) or `lvmm.datasets` (data) so that generation works
from the networks alone.
"""

__version__ = "0.1.0"
