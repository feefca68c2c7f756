"""Models: the PromptModel protocol, the hooked MAE-VQGAN, its VQGAN tokenizer, configs and checkpoint loading."""

from interp.errors import CheckpointError
from interp.models.checkpoint import load_model, load_official, save_model
from interp.models.mae_vqgan import MAEVQGAN, MAEConfig, ModelConfig
from interp.models.protocol import PromptModel, StackInfo
from interp.models.vqgan import VQGAN, VQGANConfig

__all__ = [
    "MAEVQGAN", "MAEConfig", "ModelConfig", "PromptModel", "StackInfo", "VQGAN", "VQGANConfig",
    "CheckpointError", "load_model", "load_official", "save_model",
]
