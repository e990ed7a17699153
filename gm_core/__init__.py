"""GroupedMixer learned image codec: transforms, hyperprior, group partition, group-wise
token-mixers with a context cache, and a real rANS bitstream."""
import warnings

# CompressAI scripts a helper with torch.jit at import time, which torch 2.14 deprecates: a
# warning about a dependency that our users cannot act on.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*is deprecated", category=FutureWarning)

from .checkpoint import DEFAULT_CHECKPOINT, CheckpointError, load_checkpoint
from .codec import Codec, Trace
from .config import CONFIGS, GMConfig, get_config
from .container import ContainerError
from .images import ImageError, load_image
from .model import GroupedMixerModel
from .partition import GroupPartition, PartitionError

__all__ = ["Codec", "Trace", "GroupPartition", "PartitionError", "GroupedMixerModel", "GMConfig",
           "CONFIGS", "get_config", "load_checkpoint", "DEFAULT_CHECKPOINT", "CheckpointError",
           "ContainerError", "ImageError", "load_image"]
